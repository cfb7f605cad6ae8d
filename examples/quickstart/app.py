"""A tiny shop whose background work runs on bullworker.

Three jobs show the main features:

* ``SendWelcomeEmail``: an ``async def handle`` with a typed payload (a
  TypedDict, validated when queued and when run) and a ``Mailer`` injected
  into its constructor by the app's container;
* ``ResizeImage``: a plain ``def handle`` (bullworker runs it in a thread, so
  blocking code is fine) on a queue of its own;
* ``ChargeCard``: talks to a flaky payment gateway, so it is retried with an
  exponential backoff (``JOB_OPTIONS``).

Run everything with ``scripts/example`` from the repository root, or by hand::

    bullworker start --app examples.quickstart.app:app     # the worker
    python -m examples.quickstart.produce                  # queue a few jobs

Settings come from the environment (``REDIS_URL``, ``BULL_PREFIX``...).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, ClassVar, TypedDict

from bullworker import AppConfig, BaseJob, create_app, worker_job

log = logging.getLogger("shop")


class Mailer:
    """A stand-in for a real mail service: it only logs what it would send.

    The app creates one (it is registered as a provider) and hands it to
    every job whose constructor asks for a ``Mailer``.
    """

    def send(self, to: str, subject: str) -> None:
        log.info("mailer: to=%s subject=%r", to, subject)


class WelcomeEmail(TypedDict):
    user_id: int
    email: str


@worker_job()
class SendWelcomeEmail(BaseJob[WelcomeEmail, str]):
    """Greets a new customer."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def handle(self, data: WelcomeEmail) -> str:
        self.mailer.send(data["email"], f"Welcome to the shop, customer #{data['user_id']}!")
        return f"sent to {data['email']}"


class ImageSpec(TypedDict):
    path: str
    width: int


@worker_job()
class ResizeImage(BaseJob[ImageSpec, dict[str, Any]]):
    """Makes a thumbnail. Blocking work is fine in a plain ``def handle``."""

    QUEUE_NAME = "images"

    def handle(self, data: ImageSpec) -> dict[str, Any]:
        time.sleep(0.3)  # pretend to crunch pixels
        thumbnail = data["path"].replace(".jpg", f"-{data['width']}w.jpg")
        log.info("resized %s -> %s", data["path"], thumbnail)
        return {"thumbnail": thumbnail, "width": data["width"]}


class Payment(TypedDict):
    order_id: str
    cents: int


class GatewayTimeout(Exception):
    """The (pretend) payment gateway did not answer in time."""


@worker_job()
class ChargeCard(BaseJob[Payment, str]):
    """Charges an order; the gateway times out on every third call, so jobs retry."""

    JOB_OPTIONS: ClassVar[dict[str, Any]] = {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 200},
    }
    _calls = itertools.count(1)

    async def handle(self, data: Payment) -> str:
        if next(self._calls) % 3 == 0:
            raise GatewayTimeout(f"gateway timed out charging order {data['order_id']}")
        log.info("charged order %s: %.2f EUR", data["order_id"], data["cents"] / 100)
        return f"charged {data['order_id']}"


app = create_app(config=AppConfig(), enable_worker=True, providers=[Mailer])
