"""Client TLS of Redis connections: the CA to trust, and a client certificate with its key.

The files come from ``REDIS_TLS_CA_FILE``, ``REDIS_TLS_CERT_FILE`` and
``REDIS_TLS_KEY_FILE`` (``BULL_REDIS_TLS_*`` for the queues), or from
``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile`` in the query of a
``rediss://`` URL, which win key by key. They are loaded here when the config
is read, and again when a connection is built: redis-py only loads them inside
each connection attempt, where a missing file or a key that does not match its
certificate looked like an unreachable server, tried again for half a minute.

A server that refuses the client's certificate is heard by :class:`TLSConnection`,
and such refusals are not tried again (:func:`refused_by_tls`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from bullworker.core.errors import ConfigError


class TLSSettings(Protocol):
    """What TLS needs of a connection's settings (``RedisSettings`` has it)."""

    @property
    def url(self) -> str | None: ...

    @property
    def tls_ca_file(self) -> str | None: ...

    @property
    def tls_cert_file(self) -> str | None: ...

    @property
    def tls_key_file(self) -> str | None: ...

    @property
    def uses_tls(self) -> bool: ...

    def describe(self) -> str: ...


#: Each file setting (an attribute of RedisSettings) and its redis-py keyword,
#: which is also its name in a rediss:// URL's query.
FILES = {
    "tls_ca_file": "ssl_ca_certs",
    "tls_cert_file": "ssl_certfile",
    "tls_key_file": "ssl_keyfile",
}


def setting_names(prefix: str = "") -> dict[str, str]:
    """The environment variable of each file setting, for messages."""
    return {key: f"{prefix}REDIS_{key.upper()}" for key in FILES}


def client_tls(settings: TLSSettings, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """redis-py's ``ssl_*`` keywords for a connection to ``settings``, files checked.

    Empty when the connection does not use TLS. Raises :class:`ConfigError`,
    naming the setting (``names``: the variable of each key of :data:`FILES`),
    when a file is set without TLS, a certificate comes without its key or the
    other way round, or a file cannot be loaded.
    """
    shown = {**setting_names(), **(names or {})}
    files: dict[str, str | None] = {key: getattr(settings, key) for key in FILES}
    opts: dict[str, Any] = {}
    if settings.url and settings.uses_tls:
        query = parse_qs(urlsplit(settings.url).query)
        if "ssl_cert_reqs" in query:
            opts["ssl_cert_reqs"] = query["ssl_cert_reqs"][0]
        for setting, keyword in FILES.items():
            if keyword in query:
                files[setting] = query[keyword][0]
                shown[setting] = f"{keyword} of the Redis URL"
            elif any(k in query for k in FILES.values()):
                shown[setting] = f"{keyword} of the Redis URL (or {shown[setting]})"
    given = [shown[setting] for setting, path in files.items() if path]
    if not given:
        return opts
    if not settings.uses_tls:
        verb = "is" if len(given) == 1 else "are"
        raise ConfigError(
            f"{', '.join(given)} {verb} set, but the connection to {settings.describe()} "
            "does not use TLS: set REDIS_TLS=true or use a rediss:// URL"
        )
    cert, key = files["tls_cert_file"], files["tls_key_file"]
    if bool(cert) != bool(key):
        have, missing = (
            ("tls_cert_file", "tls_key_file") if cert else ("tls_key_file", "tls_cert_file")
        )
        raise ConfigError(
            f"{shown[have]} is set but {shown[missing]} is not: a client certificate "
            "needs its private key, and the key its certificate"
        )
    _check_files(files, shown)
    opts.update({FILES[setting]: path for setting, path in files.items() if path})
    return opts


def _check_files(files: Mapping[str, str | None], shown: Mapping[str, str]) -> None:
    for setting, path in files.items():
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f"{shown[setting]}={path!r}: {exc.strerror or exc}") from None
    context = ssl.create_default_context()
    ca = files["tls_ca_file"]
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{shown['tls_ca_file']}={ca!r} holds no PEM certificate ({exc.reason or exc})"
            ) from None
    cert, key = files["tls_cert_file"], files["tls_key_file"]
    if cert and key:
        try:
            # An empty password: an encrypted key fails here instead of prompting later.
            context.load_cert_chain(certfile=cert, keyfile=key, password="")
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{shown['tls_cert_file']}={cert!r} and {shown['tls_key_file']}={key!r} are not "
                f"a PEM certificate and its unencrypted private key ({exc.reason or exc})"
            ) from None
