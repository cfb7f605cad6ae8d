"""Pages from the package's Jinja2 templates, autoescaped, with relative links only.

Every link of a page starts with ``base``: ``./`` at the dashboard's root,
``../`` one level down, so the pages work wherever the dashboard is mounted
(``app.mount("/jobs", ...)``, behind a proxy that strips a prefix) without
knowing the path. Timestamps show in UTC in ``<time>`` elements that the
script can show in local time.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from bullworker.dashboard import charts
from bullworker.dashboard.access import CSRF_COOKIE, csrf_token

HERE = Path(__file__).resolve().parent


def when(value: datetime | str | None) -> Markup:
    """``<time>`` of a moment, shown as ``2026-12-05 10:00:05Z`` (UTC); ``-`` for None."""
    if value is None:
        return Markup("-")
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    moment = value.astimezone(UTC)
    stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    shown = moment.strftime("%Y-%m-%d %H:%M:%S") + "Z"
    return Markup(f'<time datetime="{escape(stamp)}">{escape(shown)}</time>')


def seconds(value: float | None) -> str:
    """An age or a duration for people: ``850 ms``, ``12 s``, ``4 min``, ``3 h``, ``2 d``."""
    if value is None:
        return "-"
    if value < 1:
        return f"{round(value * 1000)} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if value >= size * 2 or (unit == "min" and value >= 120):
            return f"{value / size:.0f} {unit}"
    return f"{value:.3g} s"


def millis(value: int | None) -> str:
    return "-" if value is None else seconds(value / 1000)


def as_json(value: Any) -> str:
    """Indented JSON for a ``<pre>`` (escaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(when=when, seconds=seconds, millis=millis, json=as_json, first_line=first_line)
_env.globals.update(
    throughput_chart=charts.throughput_chart,
    failure_rate_chart=charts.failure_rate_chart,
    sparkline=charts.sparkline,
)


def base(request: Request) -> str:
    """The relative path from this page back to the dashboard's root (``./``, ``../``)."""
    root = request.scope.get("root_path", "")
    path = request.scope.get("path", "/")
    inner = path[len(root) :] if root and path.startswith(root) else path
    depth = inner.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def cookie_path(request: Request) -> str:
    return (request.scope.get("root_path", "") or "").rstrip("/") + "/"


def link(page: str, **params: Any) -> str:
    """``page?a=1&b=2`` without the params that are None or empty."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return page + ("?" + urlencode(kept) if kept else "")


_env.globals["link"] = link


_URL = re.compile(
    r"(?i)\b(rediss?|unix|postgres(?:ql)?(?:\+\w+)?|sqlite)://(?:[^\s,;)'\"]*[^\s,;)'\":.])?"
)


def public(text: str | None) -> str | None:
    """An error text without the connection URLs it names (even with passwords hidden)."""
    return None if text is None else _URL.sub(lambda m: f"{m.group(1)}://…", text)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page ``template`` with ``context``, the viewer, the CSRF token and ``base``.

    The ``message`` and ``problem`` of a page are shown without connection URLs."""
    token, new = csrf_token(request)
    for key in ("message", "problem"):
        if isinstance(context.get(key), str):
            context[key] = public(context[key])
    state = request.scope["bullworker_dashboard"]
    context.setdefault("viewer", request.scope.get("bullworker_viewer"))
    html = _env.get_template(template).render(
        request=request,
        base=base(request),
        csrf=token,
        title=context.pop("title", "bullworker"),
        dashboard=state,
        now=datetime.now(UTC),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if new:
        response.set_cookie(
            CSRF_COOKIE, token, path=cookie_path(request), httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
    return response


def age(moment: datetime | None) -> float | None:
    """Seconds since ``moment``."""
    return None if moment is None else (datetime.now(UTC) - moment) / timedelta(seconds=1)


_env.globals["age"] = age
