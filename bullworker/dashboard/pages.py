"""The dashboard's pages (GET): each parses its query, calls `bullworker.ops`, renders.

- ``./`` every queue (`ops.overview.queues_overview`) and the throughput and
  failure-rate charts of the last hour or day (`ops.history_views`);
- ``jobs`` a job list over Redis and ``_jobs`` (`ops.browse.browse_jobs`);
- ``job?id=<queue>:<jobId>`` one job (`ops.job_view.job_view`);
- ``schedules`` the cron schedules (`ops.schedules.describe_schedules`);
- ``failures`` the failures of a window grouped by name and reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bullworker.core.durations import DurationError, parse_since
from bullworker.core.errors import OpsError, StoreError
from bullworker.dashboard.access import Viewer
from bullworker.dashboard.render import page
from bullworker.history.store import JobStore
from bullworker.ops.browse import LIVE_STATES, STATES, JobQuery, browse_jobs
from bullworker.ops.history_views import WINDOWS, failure_groups, throughput_series
from bullworker.ops.job_view import job_view
from bullworker.ops.overview import queues_overview
from bullworker.ops.queues import COUNTED
from bullworker.ops.schedules import describe_schedules

#: The windows of the failures page: query value -> (label, length).
FAILURE_WINDOWS = {
    "1h": ("last hour", timedelta(hours=1)),
    "1d": ("last day", timedelta(days=1)),
    "7d": ("last 7 days", timedelta(days=7)),
}
#: Choices of the list's time filter (a duration ago), besides any duration or ISO time typed.
SINCE_CHOICES = ("15m", "1h", "6h", "1d", "7d", "30d")


def page_name(request: Request) -> str:
    """The first path segment under the dashboard's root (``""`` for the overview)."""
    root = str(request.scope.get("root_path", ""))
    path = str(request.scope.get("path", "/"))
    inner = path[len(root) :] if root and path.startswith(root) else path
    return inner.lstrip("/").partition("/")[0]


def _dashboard(request: Request) -> Any:
    return request.scope["bullworker_dashboard"]


def refused(request: Request, seen: Viewer) -> Response:
    """The answer to a request that may not see the dashboard (see `access`)."""
    credentials = _dashboard(request).credentials
    if seen.refusal == "local-only":
        message = (
            "This dashboard has no credentials, so it answers only requests from this machine "
            "(a loopback address). Set DASHBOARD_TOKEN (or DASHBOARD_USER and "
            "DASHBOARD_PASSWORD) to open it to others."
        )
        return page(request, "error.html", 403, title="refused", message=message)
    response = page(request, "login.html", 401, title="sign in", failed=False)
    if credentials.basic:
        response.headers["www-authenticate"] = 'Basic realm="bullworker dashboard"'
    return response


async def _store_or_error(request: Request) -> tuple[JobStore | None, str | None]:
    """The store, or None and why (recording off, or the database does not answer)."""
    dashboard = _dashboard(request)
    if not dashboard.recording:
        return None, "RECORD_JOBS is false: no _jobs history"
    try:
        return await dashboard.store(), None
    except StoreError as exc:
        return None, str(exc)


async def overview(request: Request) -> Response:
    dashboard = _dashboard(request)
    window = request.query_params.get("window", "hour")
    if window not in WINDOWS:
        window = "hour"
    queues = await queues_overview(dashboard.app)
    store, problem = await _store_or_error(request)
    series: dict[str | None, Any] = {}
    if store is not None:
        try:
            series = await throughput_series(store, window)
        except StoreError as exc:
            problem = str(exc)
    return page(
        request, "overview.html", title="queues", queues=queues, series=series,
        window=window, windows=list(WINDOWS), states=COUNTED, problem=problem,
    )  # fmt: skip


def parse_moment(name: str, text: str) -> datetime | None:
    """A duration ago (``1h``) or an ISO time, as ``--since`` takes it; None for ``""``."""
    if not text.strip():
        return None
    try:
        return parse_since(text.strip())
    except DurationError as exc:
        raise OpsError(f"{name}: {exc}") from None


def _moment(request: Request, name: str) -> datetime | None:
    return parse_moment(name, request.query_params.get(name, ""))


def _number(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise OpsError(f"{name} must be a whole number, got {text!r}")
    return int(text)


def job_query(request: Request) -> JobQuery:
    """The list's filter and page from the query string (an OpsError says what is wrong)."""
    params = request.query_params
    state = params.get("state") or None
    if state == "all":
        state = None
    return JobQuery(
        queue=params.get("queue") or None,
        state=state,
        name=params.get("name", "").strip() or None,
        since=_moment(request, "since"),
        until=_moment(request, "until"),
        text=params.get("text", "").strip() or None,
        cursor=params.get("cursor") or None,
        offset=_number(request, "offset", 0),
        limit=_number(request, "limit", 50),
    )


async def jobs(request: Request) -> Response:
    dashboard = _dashboard(request)
    query = job_query(request)
    queues = await dashboard.queues()
    store, problem = await _store_or_error(request)
    result = await browse_jobs(dashboard.app, store, query, queues=queues)
    filters = {
        key: request.query_params.get(key, "")
        for key in ("queue", "state", "name", "since", "until", "text", "limit")
    }
    return page(
        request, "jobs.html", title="jobs", result=result, query=query, filters=filters,
        queues=queues, states=STATES, live_states=LIVE_STATES, since_choices=SINCE_CHOICES,
        problem=problem if query.history else None,
    )  # fmt: skip


async def job(request: Request) -> Response:
    dashboard = _dashboard(request)
    job_id = request.query_params.get("id", "").strip()
    if not job_id:
        raise OpsError("no job id: job?id=<queue>:<jobId>")
    if not dashboard.recording:
        raise OpsError("the job page reads _jobs, and RECORD_JOBS is false")
    details = await job_view(dashboard.config, await dashboard.store(), job_id)
    return page(request, "job.html", title=job_id, job_id=job_id, details=details)


async def schedules(request: Request) -> Response:
    found = await describe_schedules(_dashboard(request).app, count=3)
    return page(request, "schedules.html", title="schedules", schedules=found)


async def failures(request: Request) -> Response:
    window = request.query_params.get("window", "1d")
    if window not in FAILURE_WINDOWS:
        window = "1d"
    label, length = FAILURE_WINDOWS[window]
    store, problem = await _store_or_error(request)
    groups = [] if store is None else await failure_groups(store, length)
    return page(
        request, "failures.html", title="failures", groups=groups, window=window,
        windows=FAILURE_WINDOWS, label=label, problem=problem,
    )  # fmt: skip
