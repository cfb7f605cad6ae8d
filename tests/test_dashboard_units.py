"""The dashboard's pieces that need no server: charts, formatting, access rules, cursors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.requests import Request

from bullworker.core.errors import OpsError
from bullworker.dashboard import charts
from bullworker.dashboard.access import Credentials, csrf_ok, is_loopback, viewer
from bullworker.dashboard.render import base, public, seconds, when
from bullworker.ops.browse import JobRow, decode_cursor, encode_cursor
from bullworker.ops.history_views import Series

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bullworker" / "dashboard"


def request(path: str = "/", root: str = "", client: str = "127.0.0.1", **headers: str) -> Request:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http", "method": "GET", "path": path, "root_path": root, "headers": raw,
        "client": (client, 1234), "query_string": b"",
    }  # fmt: skip
    return Request(scope)


def series() -> Series:
    start = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    return Series(start, timedelta(minutes=1), [3, 0, 5], [1, 0, 0], [0, 0, 1])


def test_charts_are_svg_with_escaped_text() -> None:
    svg = str(charts.throughput_chart(series()))
    assert svg.startswith('<svg class="chart"') and svg.endswith("</svg>")
    assert "10:00 UTC: 3 completed, 1 failed, 0 cancelled" in svg
    assert svg.count('class="c-completed"') == 2 and 'class="c-cancelled"' in svg
    rate = str(charts.failure_rate_chart(series()))
    assert "25% failed" in rate and "<circle" in rate
    assert "<rect" in str(charts.sparkline(series()))
    assert "no job finished" in str(charts.sparkline(None))
    assert series().failure_rate == [0.25, None, 0.0]


def test_formatting() -> None:
    assert seconds(None) == "-" and seconds(0.25) == "250 ms" and seconds(12) == "12 s"
    assert seconds(600) == "10 min" and seconds(3 * 3600) == "3 h" and seconds(3 * 86400) == "3 d"
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert str(when(moment)) == (
        '<time datetime="2026-01-02T03:04:05.678Z">2026-01-02 03:04:05Z</time>'
    )
    assert str(when(None)) == "-"
    text = (
        "cannot reach Redis at redis://u:***@cache:6379/0; PostgreSQL postgresql://u:***@db/x: no"
    )
    assert public(text) == "cannot reach Redis at redis://…; PostgreSQL postgresql://…: no"


def test_relative_base() -> None:
    assert base(request("/")) == "./"
    assert base(request("/jobs")) == "./"
    assert base(request("/static/x.css")) == "../"
    assert base(request("/ops/jobs/", root="/ops/jobs")) == "./"
    assert base(request("/ops/jobs/job", root="/ops/jobs")) == "./"


def test_access_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback(None)
    nobody = Credentials()
    assert viewer(nobody, request()).allowed and not viewer(nobody, request()).can_act
    assert viewer(nobody, request(client="10.0.0.9")).refusal == "local-only"
    token = Credentials(token="t" * 20)
    assert viewer(token, request()).refusal == "sign-in"
    assert viewer(token, request(authorization="Bearer " + "t" * 20)).can_act
    assert not viewer(token, request(authorization="Bearer " + "t" * 19)).allowed
    basic = Credentials(user="ops", password="pw")
    good = "Basic " + base64.b64encode(b"ops:pw").decode()
    assert viewer(basic, request(authorization=good)).can_act
    assert "t" * 20 not in repr(token) and "pw" not in repr(basic)
    cookie = "a" * 43
    ok = request(cookie=f"bw_dashboard_csrf={cookie}", host="dash", origin="http://dash")
    assert csrf_ok(ok, cookie)
    assert not csrf_ok(ok, "b" * 43) and not csrf_ok(ok, None)
    assert not csrf_ok(request(cookie=f"bw_dashboard_csrf={cookie}", host="dash",
                               origin="http://evil"), cookie)  # fmt: skip
    assert not csrf_ok(request(cookie=f"bw_dashboard_csrf={cookie}", origin="null"), cookie)


def test_cursors() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    row = JobRow("q", "repeat:x:1", "N", "completed", "_jobs", None, None, moment, 1)
    assert decode_cursor(encode_cursor(row)) == (moment, "q:repeat:x:1")
    for bad in ("", "123", "abc~q:1", "~q:1"):
        with pytest.raises(OpsError):
            decode_cursor(bad)


def test_the_assets_ship_in_the_package() -> None:
    """Templates and the script are package data (pyproject.toml), nothing else is needed."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"dashboard/templates/*.html", "dashboard/static/*"' in pyproject
    for name in ("base.html", "overview.html", "jobs.html", "job.html", "schedules.html",
                 "failures.html", "confirm.html", "result.html", "error.html", "login.html"):  # fmt: skip
        assert (PACKAGE / "templates" / name).is_file(), name
    for name in ("dashboard.css", "dashboard.js"):
        text = (PACKAGE / "static" / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
