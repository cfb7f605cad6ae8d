"""Shared fixtures: real Redis and PostgreSQL, one unique key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

# The servers of the tests are named in tests/helpers.py only (tests/faults imports them from here).
from tests.helpers import PG_DSN, REDIS_URL


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run the long scenarios (marked slow)"
    )
    parser.addoption(
        "--reliability-report",
        metavar="PATH",
        default=None,
        help="write the fault suite's table (tests/faults) as markdown to PATH",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="long scenario: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def pg_dsn() -> str:
    return PG_DSN


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix owned by this test; every key under it is deleted afterwards."""
    value = f"bwtest-{uuid.uuid4().hex[:12]}"
    yield value
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=f"{value}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()
