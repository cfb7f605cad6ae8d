"""Helpers shared by the metrics tests (test_metrics_*.py): HTTP probes and scraping."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import eventually


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET to 127.0.0.1:port (blocking)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(port: int) -> Samples:
    status, content_type, body = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    return parse(body)


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


async def wait_ready(port: int, timeout: float = 20.0) -> None:
    async def ready() -> bool:
        try:
            return (await asyncio.to_thread(http_get, port, "/readyz", 1.0))[0] == 200
        except OSError:
            return False

    await eventually(ready, timeout=timeout)
