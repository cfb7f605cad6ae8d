"""Liveness and readiness of a runner, and the small HTTP server that reports them.

The server is the standard library's WSGI server in a daemon thread, so it
still answers (``/readyz`` with 503) while the event loop is blocked. Routes:

- ``/healthz``: 200 while the process is alive.
- ``/readyz``: 200 only when the event loop is responsive, the runner's workers
  are running and Redis answers PING quickly; 503 with a JSON reason otherwise.
- anything else (``/metrics``): handed to the metrics WSGI app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from bullworker.core.tasks import cancel_and_wait, within
from bullworker.transport.connection import redis_client

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from bullworker.runtime.runner import Runner

log = logging.getLogger("bullworker.health")


class LoopLagMonitor:
    """Measures how late the event loop wakes a periodic task.

    ``lag`` is readable from any thread. It also grows while the loop is
    blocked right now (the tick that should have happened did not), not only
    after the loop is free again.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._last_lag = 0.0
        self._last_tick = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    @property
    def lag(self) -> float:
        """Seconds the loop is (or last was) late; 0.0 when not monitoring."""
        if self._task is None:
            return 0.0
        overdue = time.monotonic() - self._last_tick - self.interval
        return max(0.0, self._last_lag, overdue)

    async def start(self) -> None:
        if self._task is None:
            self._last_tick = time.monotonic()
            self._task = asyncio.create_task(self._run(), name="bullworker-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self._last_lag = max(0.0, now - before - self.interval)
            self._last_tick = now


class Readiness:
    """Decides whether a runner is ready; :meth:`check` runs in the server's thread."""

    def __init__(
        self,
        runner: Runner,
        monitor: LoopLagMonitor,
        *,
        max_loop_lag: float = 1.0,
        ping_timeout: float = 1.0,
    ) -> None:
        self.runner = runner
        self.monitor = monitor
        self.max_loop_lag = max_loop_lag
        self.ping_timeout = ping_timeout
        self._redis = runner.config.redis_settings("bull")
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = redis_client(self._redis)

    async def stop(self) -> None:
        client, self._client = self._client, None
        self._loop = None
        if client is not None:
            await client.aclose()

    async def _ping(self) -> None:
        assert self._client is not None
        await within(self._client.ping(), self.ping_timeout)

    def check(self) -> tuple[bool, str]:
        """``(ready, reason)``; call it from a thread other than the event loop's."""
        lag = self.monitor.lag
        if lag > self.max_loop_lag:
            return False, f"event loop blocked for {lag:.1f} s (limit {self.max_loop_lag:g} s)"
        if not self.runner.running:
            return False, "runner is not running"
        for queue, worker in list(self.runner.workers.items()):
            if not getattr(worker, "running", False) or getattr(worker, "closing", False):
                return False, f"worker of queue {queue} is not running"
        loop, client = self._loop, self._client
        if loop is None or client is None or loop.is_closed():
            return False, "health checks are not running"
        future = asyncio.run_coroutine_threadsafe(self._ping(), loop)
        try:
            future.result(self.ping_timeout + 0.5)
        except Exception as exc:
            future.cancel()
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return False, f"Redis at {self._redis.describe()} unreachable ({detail})"
        return True, "ready"


def _respond(
    start_response: StartResponse, status: str, body: bytes, content_type: str
) -> Iterable[bytes]:
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


def health_app(metrics_app: WSGIApplication | None, readiness: Readiness) -> WSGIApplication:
    """A WSGI app serving ``/healthz``, ``/readyz`` and, for other paths, ``metrics_app``."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/healthz":
            return _respond(start_response, "200 OK", b"ok\n", "text/plain; charset=utf-8")
        if path == "/readyz":
            try:
                ready, reason = readiness.check()
            except Exception as exc:  # a probe must get an answer
                ready, reason = False, f"readiness check failed: {type(exc).__name__}: {exc}"
            body = json.dumps({"status": "ready" if ready else "not ready", "reason": reason})
            status = "200 OK" if ready else "503 Service Unavailable"
            return _respond(start_response, status, body.encode() + b"\n", "application/json")
        if metrics_app is not None and path in ("/", "/metrics"):
            return metrics_app(environ, start_response)
        return _respond(start_response, "404 Not Found", b"not found\n", "text/plain")

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: no access log."""


class HttpServer:
    """Serves a WSGI app from a daemon thread (one more thread per request)."""

    def __init__(self, app: WSGIApplication, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self._port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._server.server_address[1] if self._server is not None else self._port

    def start(self) -> None:
        """Bind (raises ``OSError`` if the port is taken) and serve in a thread."""
        server = make_server(
            self.host, self._port, self.app, _ThreadingServer, handler_class=_QuietHandler
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="bullworker-metrics-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (blocks up to one poll interval)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
