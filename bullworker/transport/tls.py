"""TLS connections to Redis that hear a refused client certificate.

A refusal (an untrusted certificate, a server that wants a client certificate
and got none) is never tried again: :func:`tls_refusal_in` tells it apart from a
connection that broke.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from redis.asyncio.connection import SSLConnection

#: SSL errors of a connection that broke (a server that went away): tried again.
_BROKEN = (
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    ssl.SSLSyscallError,
    ssl.SSLWantReadError,
    ssl.SSLWantWriteError,
)

#: Seconds a TLS connection waits after its handshake when the one before got no reply.
SETTLE = 0.1


class TLSConnection(SSLConnection):
    """redis-py's SSL connection, which also hears a refusal that comes after the handshake.

    A TLS 1.3 server checks the client certificate once the handshake is done
    and refuses it with an alert. If the first command has reached the server
    by then, closing with it unread resets the connection and the alert is
    lost: the client sees a reset, as from a server that went away, and tries
    again until REDIS_TIMEOUT. So when the previous connection got no reply at
    all, the next one waits :data:`SETTLE` after its handshake, for the alert,
    and raises the refusal itself: redis-py 8.2 and later find the transport
    closed before their first write and report only "closed by the server".
    """

    _unanswered = False

    async def _connect(self) -> None:
        await super()._connect()  # type: ignore[no-untyped-call]
        if self._unanswered:
            await asyncio.sleep(SETTLE)
            reader = getattr(self, "_reader", None)
            refusal = reader.exception() if reader is not None else None
            if refused_by_tls(refusal):
                raise refusal  # type: ignore[misc]
        self._unanswered = True

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().read_response(*args, **kwargs)
        self._unanswered = False
        return response


def refused_by_tls(error: BaseException | None) -> bool:
    """Whether ``error`` is a TLS refusal that trying again cannot fix.

    An untrusted server certificate, a server that wants a client certificate
    and got none (or one it does not trust), a plaintext port: every SSL error
    except those of a connection that broke.
    """
    return isinstance(error, ssl.SSLError) and not isinstance(error, _BROKEN)


def tls_refusal_in(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from or during, is a TLS refusal."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if refused_by_tls(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
