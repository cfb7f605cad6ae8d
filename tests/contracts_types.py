"""The Python types a job contract supports, as jobs of a registry of their own.

``CASES`` is one type per job (``BaseJob[T, T]``: the type is both the data and the result);
``catalog`` holds them all, and ``Everything``, whose data is a model that nests the others.
Types nested in a pydantic model or dataclass are ``typing_extensions`` TypedDicts: pydantic
refuses ``typing.TypedDict`` there before Python 3.12.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired

from pydantic import BaseModel
from typing_extensions import TypedDict

from bullworker import BaseJob, JobRegistry, worker_job


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(TypedDict):
    x: float
    y: float


class Shape(TypedDict):
    """A shape on a canvas."""

    kind: Literal["circle", "square"]
    center: Point
    label: str | None
    size: NotRequired[int]
    color: NotRequired[Color]


@dataclass
class Address:
    city: str
    zip: str | None = None
    lines: list[str] = field(default_factory=list)


class Customer(BaseModel):
    name: str
    id: uuid.UUID
    seen: dt.datetime
    address: Address
    level: Level = Level.LOW
    tags: dict[str, int] = {}
    born: dt.date | None = None
    wakes: dt.time | None = None
    pair: tuple[int, str] = (0, "")
    referrer: Customer | None = None


class Everything(BaseModel):
    """Every kind of field at once."""

    customer: Customer
    shapes: list[Shape]
    points: dict[str, Point]
    colors: set[str] = set()
    mode: Literal["a", "b", 1] = "a"
    anything: Any = None


#: name -> the type of a job's data and result.
CASES: dict[str, Any] = {
    "Str": str,
    "Int": int,
    "Float": float,
    "Bool": bool,
    "Null": None,
    "Color": Color,
    "Level": Level,
    "Literal": Literal["a", "b", 1],
    "Optional": int | None,
    "Union": str | int,
    "List": list[int],
    "Dict": dict[str, float],
    "Tuple": tuple[int, str],
    "Set": set[str],
    "DateTime": dt.datetime,
    "Date": dt.date,
    "Time": dt.time,
    "Uuid": uuid.UUID,
    "Point": Point,
    "Shape": Shape,
    "Address": Address,
    "Customer": Customer,
    "Shapes": list[Shape],
    "Everything": Everything,
}

catalog = JobRegistry()


def _job(name: str, typ: Any) -> None:
    def handle(self: Any, data: Any) -> Any:
        return data

    cls = types.new_class(name, (BaseJob[typ, typ],), {}, lambda ns: ns.update(handle=handle))  # type: ignore[valid-type]
    worker_job(registry=catalog)(cls)


for _name, _type in CASES.items():
    _job(f"{_name}Job", _type)


@worker_job(registry=catalog)
class Untyped(BaseJob[Any, Any]):
    QUEUE_NAME = "loose"

    def handle(self, data: Any) -> Any:
        return data
