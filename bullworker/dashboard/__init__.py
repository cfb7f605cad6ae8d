"""The web dashboard: queues, jobs, schedules and failures, with actions for signed-in users.

``bullworker dashboard`` serves it; ``dashboard_app(app)`` is the same ASGI app, to mount
in a Starlette or FastAPI service (docs/dashboard.md). Its dependencies are the extra
``bullworker[dashboard]``.
"""

from __future__ import annotations

from bullworker.dashboard.web import dashboard_app

__all__ = ["dashboard_app"]
