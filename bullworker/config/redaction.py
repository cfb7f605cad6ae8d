"""Hiding secrets: passwords in URLs and in error texts, for logs and messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote

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
