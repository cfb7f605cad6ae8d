"""Who may see and do what on the dashboard: credentials, sessions, CSRF, loopback.

- Without credentials (no ``DASHBOARD_TOKEN``, no ``DASHBOARD_USER``/``_PASSWORD``)
  the dashboard is read-only, and it answers only requests from a loopback address.
- With credentials every page needs them: ``Authorization: Bearer <token>``, HTTP
  basic, or the session cookie that the sign-in page sets once the token is typed
  (an HMAC of the token: changing the token ends every session). Authenticated
  users may act.
- Every POST carries the CSRF token: a random value in a cookie, repeated in a
  hidden form field (double submit), compared in constant time; a request that a
  browser says comes from another site is refused as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from starlette.requests import HTTPConnection

#: Cookie of the CSRF token (double submit) and of a signed-in session.
CSRF_COOKIE = "bw_dashboard_csrf"
SESSION_COOKIE = "bw_dashboard_session"
#: The form field that repeats the CSRF cookie.
CSRF_FIELD = "csrf"


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is a loopback address."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Credentials:
    """The dashboard's credentials (`AppConfig` ``dashboard_*``), none of them shown anywhere."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(token={'***' if self.token else None}, user={self.user!r})"

    @property
    def configured(self) -> bool:
        return bool(self.token) or bool(self.user and self.password)

    @property
    def basic(self) -> bool:
        return bool(self.user and self.password)

    def session_value(self) -> str | None:
        """The session cookie's value: an HMAC of the token (None without a token)."""
        if not self.token:
            return None
        digest = hmac.new(self.token.encode(), b"bullworker-dashboard-session", hashlib.sha256)
        return digest.hexdigest()

    def check_token(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), (self.token or "").encode())

    def authenticated(self, conn: HTTPConnection) -> bool:
        """Whether the request carries valid credentials (header or session cookie)."""
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.check_token(value.strip()):
            return True
        if scheme.lower() == "basic" and self.basic and self._basic(value.strip()):
            return True
        session = self.session_value()
        cookie = conn.cookies.get(SESSION_COOKIE, "")
        return session is not None and hmac.compare_digest(cookie.encode(), session.encode())

    def _basic(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        return bool(sep) and (
            hmac.compare_digest(user.encode(), (self.user or "").encode())
            & hmac.compare_digest(password.encode(), (self.password or "").encode())
        )


@dataclass(frozen=True, slots=True)
class Viewer:
    """What the request may do: see the dashboard, and act (POST actions)."""

    allowed: bool
    can_act: bool
    #: Why it may not see the dashboard: ``local-only`` or ``sign-in``.
    refusal: str | None = None


def viewer(credentials: Credentials, conn: HTTPConnection) -> Viewer:
    """The `Viewer` of a request (see the module's doc)."""
    if not credentials.configured:
        client = conn.client.host if conn.client else None
        if not is_loopback(client):
            return Viewer(False, False, "local-only")
        return Viewer(True, False)
    if credentials.authenticated(conn):
        return Viewer(True, True)
    return Viewer(False, False, "sign-in")


def csrf_token(conn: HTTPConnection) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (to be set as a cookie)."""
    known = conn.cookies.get(CSRF_COOKIE, "")
    if len(known) >= 32 and known.replace("-", "").replace("_", "").isalnum():
        return known, False
    return secrets.token_urlsafe(32), True


def csrf_ok(conn: HTTPConnection, submitted: str | None) -> bool:
    """Whether a POST may go on: the form repeats the cookie, and no other site sent it."""
    if conn.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = conn.headers.get("origin")
    if origin is not None:  # a proxy may rewrite Host: it then says the original one
        hosts = {conn.headers.get("host"), conn.headers.get("x-forwarded-host")}
        if origin.partition("://")[2] not in hosts - {None}:
            return False
    cookie = conn.cookies.get(CSRF_COOKIE, "")
    return bool(cookie and submitted) and hmac.compare_digest(
        cookie.encode(), (submitted or "").encode()
    )
