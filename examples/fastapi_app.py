"""A FastAPI service that queues bullworker jobs and, in development, also runs them.

``lifespan(app)`` opens the bullworker app with the web app: the endpoints get
the ``WorkerService`` through ``Depends(get_worker_service)``, and with
``APP_ENV=development`` (the default) the runner starts in the same process, so
one ``uvicorn`` command is a complete dev setup. In production the runner is off
here (run ``bullworker start --app examples.fastapi_app:app`` as its own
deployment), unless ``ENABLE_JOB_RUNNER=true``.

Run it from the repository root (``pip install fastapi uvicorn``)::

    uvicorn examples.fastapi_app:api
    curl -s -X POST localhost:8000/greetings -H 'content-type: application/json' -d '{"name": "Ada"}'
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from bullworker import AppConfig, BaseJob, JobRegistry, WorkerService, create_app, worker_job
from bullworker.asgi import get_worker_service, lifespan

# No logging set up here: uvicorn configures only its own loggers, so when the runner
# starts, bullworker logs to stderr itself (LOG_LEVEL, LOG_FORMAT), this logger included.
log = logging.getLogger("greetings")

#: This example's own registry; a service usually uses the default one (no ``registry=``).
registry = JobRegistry()


class Greeting(BaseModel):
    name: str


@worker_job(registry=registry)
class GreetJob(BaseJob[Greeting, str]):
    """Stands in for slow work (an email, a report) done after the response."""

    async def handle(self, data: Greeting) -> str:
        text = f"Hello, {data.name}!"
        log.info("GreetJob: %s", text)
        return text


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
api = FastAPI(lifespan=lifespan(app))


@api.post("/greetings", status_code=202)
async def greet(
    greeting: Greeting,
    worker_service: Annotated[WorkerService, Depends(get_worker_service)],
) -> dict[str, str]:
    """Queue a greeting; the response comes before the job runs."""
    return {"job_id": await worker_service.queue_job(GreetJob, greeting)}
