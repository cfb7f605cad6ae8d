"""The jobs of a billing service that a Node service queues (docs/contracts.md).

Their types are exported for Node into ``generated/``, from the repository root::

    bullworker contracts export --app examples.contracts.tasks:app --out examples/contracts/generated
    bullworker contracts export --app examples.contracts.tasks:app --format jsonschema \\
        --out examples/contracts/generated

``producer.ts`` queues them from Node with those types; ``bullworker contracts check --against
examples/contracts/generated --app examples.contracts.tasks:app`` says what a change of these
classes would break. The jobs have a registry of their own, so they never clash with other apps.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Literal, NotRequired

from pydantic import BaseModel
from typing_extensions import TypedDict  # pydantic needs it in a model before Python 3.12

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

reg = JobRegistry()


class Currency(enum.StrEnum):
    EUR = "EUR"
    USD = "USD"


class Line(TypedDict):
    sku: str
    quantity: int
    unit_price: float
    note: NotRequired[str | None]


class Invoice(BaseModel):
    """An invoice to send to a customer."""

    customer: str
    lines: list[Line]
    due: dt.date
    currency: Currency = Currency.EUR
    tags: dict[str, str] = {}


@dataclass
class Sent:
    invoice_id: str
    total: float
    currency: Currency
    sent_at: dt.datetime
    channel: Literal["email", "post"]


@worker_job(registry=reg)
class SendInvoice(BaseJob[Invoice, Sent]):
    QUEUE_NAME = "billing"

    async def handle(self, data: Invoice) -> Sent:
        total = sum(line["quantity"] * line["unit_price"] for line in data.lines)
        return Sent(
            invoice_id=f"{data.customer}-{data.due.isoformat()}",
            total=round(total, 2),
            currency=data.currency,
            sent_at=dt.datetime.now(dt.UTC),
            channel="email",
        )


class Refund(TypedDict):
    invoice_id: str
    amount: float
    reason: NotRequired[Literal["duplicate", "fraud", "requested"]]


@worker_job(registry=reg)
class RefundPayment(BaseJob[Refund, bool]):
    QUEUE_NAME = "billing"

    async def handle(self, data: Refund) -> bool:
        return data["amount"] > 0


app = create_app(config=AppConfig(), enable_worker=True, registry=reg)
