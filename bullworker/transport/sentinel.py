"""Sentinel for bullworker's connections: follow the master the sentinels name.

bullmq clients hold one connection for life, and redis-py reconnects such a
connection to the address it had, so with Sentinel they never followed a
failover. The connection here asks the sentinels for the master on every
(re)connect and checks, at most every ``master_check_interval`` seconds, that
it still talks to the master they name (see `bullworker.transport.connection`).
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullworker.transport.tls import TLSConnection


class _Sentinel(Sentinel):
    """Names no master while a failover is in progress, and says why it found none.

    The old master still accepts writes until the sentinels reconfigure it, and
    then drops them; a command waits (retries) for the new master instead.
    """

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        """The master's address from the first sentinel that names one.

        As redis-py's, except that the errors read well, and that credentials
        refused by a sentinel raise AuthenticationError (not tried again)
        instead of a MasterNotFoundError that waits for a master in vain.
        """
        failures: list[str] = []
        refused: list[str] = []
        for index, sentinel in enumerate(self.sentinels):
            where = sentinel.connection_pool.connection_kwargs
            name = f"sentinel {where.get('host')}:{where.get('port')}"
            try:
                masters = await sentinel.sentinel_masters()
            except AuthenticationError as exc:
                given = self.sentinel_kwargs.get("password") is not None
                whom = "the credentials" if given else "a client without credentials"
                refused.append(f"{name} refused {whom}: {exc}")
                continue
            except (RedisConnectionError, RedisTimeoutError) as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            if isinstance(masters, dict):
                state = masters.get(service_name)
            else:  # a list of states under RESP3
                state = next((m for m in masters if m.get("name") == service_name), None)
            if state and self.check_master_state(state, service_name):
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                forced = getattr(self, "_force_master_ip", None)
                return (forced if forced is not None else state["ip"]), int(state["port"])
        if refused:
            raise AuthenticationError(
                "; ".join(refused) + " (check REDIS_SENTINEL_USERNAME and REDIS_SENTINEL_PASSWORD)"
            )
        raise MasterNotFoundError(
            f"No master found for {service_name!r}" + "".join(f"; {f}" for f in failures)
        )

    def check_master_state(self, state: dict[str, Any], service_name: str) -> bool:
        flags = state.get("flags", "")
        if "failover_in_progress" in (flags.split(",") if isinstance(flags, str) else flags):
            return False
        return bool(super().check_master_state(state, service_name))


class _SentinelPool(SentinelConnectionPool):
    """A Sentinel pool that closes its sentinel clients too."""

    def __init__(self, *args: Any, master_check_interval: float, **kwargs: Any) -> None:
        self.master_check_interval = master_check_interval
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


class _SentinelConnection(SentinelManagedConnection):
    """Follows the master the sentinels name, also as a single long-lived connection."""

    _checked_at = 0.0

    async def _connect(self) -> None:
        # redis-py reconnects a dropped connection through _connect() with the old
        # address, not through connect(): ask the sentinels here, every time.
        pool = self.connection_pool
        if pool.is_master:
            self.host, self.port = await pool.get_master_address()
            self._checked_at = time.monotonic()
        await super()._connect()  # type: ignore[no-untyped-call]

    async def check_health(self) -> None:
        await super().check_health()  # type: ignore[no-untyped-call]
        pool = self.connection_pool
        if not pool.is_master or time.monotonic() - self._checked_at < pool.master_check_interval:
            return
        address = tuple(await pool.get_master_address())
        self._checked_at = time.monotonic()
        if address != (self.host, self.port):  # a failover: this one is no longer the master
            await self.disconnect()
            raise RedisConnectionError(f"the Redis master moved to {address[0]}:{address[1]}")


class _SentinelSSLConnection(_SentinelConnection, TLSConnection):
    pass
