"""Hiding secrets: passwords in URLs and in error texts, for logs and messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:@/?#]*):.*@", re.DOTALL)
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s#]+)")


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by ``***``.

    Handles ``scheme://user:password@host`` (up to the last ``@``, so an
    unescaped ``@`` in the password cannot leak) and ``password=`` parameters
    in a query string or a libpq keyword DSN.
    """
    redacted = _USERINFO.sub(lambda m: m.group("head") + ":***@", url, count=1)
    return _PASSWORD_PARAM.sub(lambda m: m.group(1) + "***", redacted)


def url_location(url: str, *, default_port: int | None = None) -> str:
    """Where `url` points, as ``user@host:port/path``: no scheme, password or query string.

    For log lines that say where something goes (``postgres@db:5432/app``). A URL
    without a host (a socket path in its query, say) is shown whole, redacted.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        return redact_url(url)
    if not host:
        return redact_url(url)
    user = f"{unquote(parts.username)}@" if parts.username else ""
    host = f"[{host}]" if ":" in host else host
    port = port or default_port
    return f"{user}{host}{f':{port}' if port else ''}{unquote(parts.path)}"


def url_secrets(url: str) -> list[str]:
    """The password(s) in `url`, raw and percent-decoded, to scrub from error texts."""
    found: list[str] = []
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^:@/?#]*:(.*)@", url, re.DOTALL)
    if match:
        found.append(match.group(1))
    found.extend(m.group(2).strip("'") for m in _PASSWORD_PARAM.finditer(url))
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret in `text` with ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
