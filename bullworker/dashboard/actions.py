"""The dashboard's actions (POST): retry, promote, remove, cancel, pause and resume; sign-in.

Every action is two POSTs to ``action``: the first shows what it will do (a
confirmation page; a retry of every matching failure lists them, as
``bullworker retry --dry-run`` does), the second, with ``confirm=yes``, does it
and shows the outcome. Both need the CSRF token and a viewer that may act
(`access`); a read-only dashboard refuses them with 403. Each action is the
library call of its CLI command:

=========== ===================================================================
retry       ``ops.retry.select_failed`` (``--id``) + ``ops.retry.retry_jobs``
retry-all   ``ops.retry.select_failed`` (queue, name, since) + ``retry_jobs``
promote     ``ops.queue_jobs.promote_job``
remove      ``ops.queue_jobs.remove_job``
cancel      ``ops.cancel.cancel_job``
pause       ``ops.queues.set_paused`` (and ``resume``)
=========== ===================================================================
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bullworker.core.errors import OpsError
from bullworker.dashboard.access import SESSION_COOKIE, csrf_ok
from bullworker.dashboard.pages import parse_moment, refused
from bullworker.dashboard.render import cookie_path, page
from bullworker.ops.cancel import cancel_job
from bullworker.ops.inspect import check_job_id
from bullworker.ops.queue_jobs import promote_job, remove_job
from bullworker.ops.queues import set_paused
from bullworker.ops.retry import Retry, retry_jobs, select_failed

#: What each action does, for its confirmation page.
ACTIONS = {
    "retry": "Retry the failed job {id}: queue it again with its name and data",
    "retry-all": "Retry every failed job that matches",
    "promote": "Promote the delayed job {id}: it waits to start now",
    "remove": "Remove the job {id} from Redis",
    "cancel": "Cancel the job {id}",
    "pause": "Pause the queue {queue}: no worker (bullworker or Node) starts its jobs",
    "resume": "Resume the queue {queue}: its waiting jobs can start",
}
#: Largest form body read, in bytes.
MAX_BODY = 65_536
#: Failures `retry-all` looks at for the text of their reason, at most.
TEXT_SCAN = 5000
#: Seconds a cancel waits for a running job to stop (``jobs cancel --wait``).
CANCEL_WAIT = 2.0


async def _form(request: Request) -> dict[str, str]:
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise OpsError("form too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise OpsError("form too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _forbidden(request: Request, message: str) -> Response:
    return page(request, "error.html", 403, title="refused", message=message)


async def action(request: Request) -> Response:
    viewer = request.scope["bullworker_viewer"]
    if not viewer.can_act:
        return _forbidden(
            request, "This dashboard is read-only: actions need DASHBOARD_TOKEN or "
            "DASHBOARD_USER and DASHBOARD_PASSWORD, and a signed-in user.",
        )  # fmt: skip
    form = await _form(request)
    if not csrf_ok(request, form.get("csrf")):
        return _forbidden(request, "The form's CSRF token is missing or wrong: reload the page.")
    do = form.get("do", "")
    if do not in ACTIONS:
        raise OpsError(f"unknown action {do!r}")
    dashboard = request.scope["bullworker_dashboard"]
    fields = {k: v for k, v in form.items() if k not in ("csrf", "confirm")}
    if do in ("retry", "promote", "remove", "cancel"):
        fields["id"] = check_job_id(form.get("id", "").strip(), dashboard.config.bull_queue)
    elif do in ("pause", "resume") and not form.get("queue"):
        raise OpsError("a queue name is required")
    what = ACTIONS[do].format(id=fields.get("id", ""), queue=form.get("queue", ""))
    if form.get("confirm") != "yes":
        preview = await _retries(dashboard, fields, dry_run=True) if do == "retry-all" else []
        return page(
            request, "confirm.html", title="confirm", what=what, fields=fields,
            preview=preview, do=do,
        )  # fmt: skip
    lines, retries = await _perform(dashboard, do, fields)
    back = f"job?id={fields['id']}" if "id" in fields else ""
    return page(
        request, "result.html", title="done", what=what, lines=lines, retries=retries, back=back
    )


async def _perform(dashboard: Any, do: str, fields: dict[str, str]) -> tuple[list[str], Any]:
    """Do the action; the lines that say what was done, and the retries (retry actions)."""
    app = dashboard.app
    if do in ("retry", "retry-all"):
        return [], await _retries(dashboard, fields, dry_run=False)
    if do == "promote":
        return [(await promote_job(app, fields["id"])).describe()], []
    if do == "remove":
        return [(await remove_job(app, fields["id"])).describe()], []
    if do == "cancel":
        queue, _, job_id = fields["id"].partition(":")
        reason = fields.get("reason", "").strip() or "cancelled from the dashboard"
        cancelled = await cancel_job(dashboard.config, queue, job_id, reason, wait=CANCEL_WAIT)
        return [cancelled.describe()], []
    paused = await set_paused(app, fields["queue"], do == "pause")
    dashboard.forget_queues()
    return [paused.describe()], []


async def _retries(dashboard: Any, fields: dict[str, str], *, dry_run: bool) -> list[Retry]:
    """`retry_jobs` of the failures ``fields`` select (``id``, or queue, name, since, text)."""
    store = await dashboard.store()
    config = dashboard.config
    if "id" in fields:
        records = await select_failed(store, config, job_id=fields["id"])
    else:
        queue = fields.get("queue") or None
        name = fields.get("name") or None
        since = parse_moment("since", fields.get("since", ""))
        if queue is None and name is None and since is None:
            raise OpsError("choose the failed jobs to retry: a queue, a job name or a time")
        limit_text = fields.get("limit", "") or "100"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise OpsError("limit must be from 1 to 1000")
        limit, text = int(limit_text), fields.get("text", "").strip().casefold()
        records = await select_failed(
            store, config, queue=queue, name=name, since=since,
            limit=TEXT_SCAN if text else limit, queues=await dashboard.queues(),
        )  # fmt: skip
        if text:
            records = [r for r in records if text in (r.reason or "").casefold()][:limit]
    return await retry_jobs(dashboard.app, store, records, dry_run=dry_run)


async def login_page(request: Request) -> Response:
    viewer = request.scope["bullworker_viewer"]
    if viewer.allowed:
        return RedirectResponse("./", status_code=303)
    return refused(request, viewer)


async def login(request: Request) -> Response:
    dashboard = request.scope["bullworker_dashboard"]
    credentials = dashboard.credentials
    form = await _form(request)
    if not csrf_ok(request, form.get("csrf")):
        return _forbidden(request, "The form's CSRF token is missing or wrong: reload the page.")
    if not credentials.check_token(form.get("token", "").strip()):
        await asyncio.sleep(0.3)  # a wrong token costs time
        return page(request, "login.html", 401, title="sign in", failed=True)
    response = RedirectResponse("./", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, credentials.session_value() or "", path=cookie_path(request),
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


async def logout(request: Request) -> Response:
    form = await _form(request)
    if not csrf_ok(request, form.get("csrf")):
        return _forbidden(request, "The form's CSRF token is missing or wrong: reload the page.")
    response = RedirectResponse("./", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=cookie_path(request))
    return response
