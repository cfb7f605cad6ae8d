"""The exported JSON Schemas agree with the Python side, for every supported type (property tests).

For each type of tests/contracts_types.py, as a job's data (the validation schema) and result
(the serialization schema), checked with the Python ``jsonschema`` package (draft 2020-12):

- every value of the type, as the runner dumps it to JSON, is accepted by both schemas, and
  read back by Python: the schemas accept what the wire carries;
- every JSON value near it (a field dropped, added or replaced, a value of another type) that a
  schema accepts, Python accepts: the schemas reject what Python rejects, so a producer that
  checks with them never queues a payload the runner refuses.

Python is laxer in one direction, on purpose: it also reads spellings the wire never carries from
bullworker (``"3"`` for an int, a Unix time for a datetime); the schemas keep to the JSON form.
The date and time patterns are checked on their own: every string they match, Python reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import types
import typing
import uuid
from typing import Any

import pytest
import typing_extensions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from bullworker.contracts import build_contract
from bullworker.contracts.build import PATTERNS
from tests.contracts_types import CASES, catalog

CONTRACT = build_contract(catalog, "default")
SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
SAFE_INT = 2**53 - 1


def validator(schema: Any) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


VALIDATORS = {
    (name, which): validator(getattr(job, which))
    for name, job in CONTRACT.jobs.items()
    for which in ("data", "result")
}


def adapter(name: str, which: str) -> Any:
    return catalog.get(name)._adapter("in" if which == "data" else "out")


def python_accepts(name: str, which: str, value: Any) -> bool:
    try:
        adapter(name, which).validate_python(value)
    except ValidationError:
        return False
    return True


_strategies: dict[Any, st.SearchStrategy[Any]] = {}


def values(tp: Any) -> st.SearchStrategy[Any]:
    """Python values of the type ``tp`` (recursive types through st.deferred)."""
    if tp in _strategies:
        return _strategies[tp]
    if isinstance(tp, type) and (issubclass(tp, BaseModel) or dataclasses.is_dataclass(tp)):
        _strategies[tp] = st.deferred(lambda: _values(tp))
        return _strategies[tp]
    return _values(tp)


def _offsets() -> st.SearchStrategy[dt.timezone | None]:
    minutes = st.integers(-23 * 60 - 59, 23 * 60 + 59)
    return st.none() | minutes.map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


def _values(tp: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    scalars: dict[Any, st.SearchStrategy[Any]] = {
        str: st.text(max_size=8),
        int: st.integers(-SAFE_INT, SAFE_INT),
        float: st.floats(allow_nan=False, allow_infinity=False),
        bool: st.booleans(),
        None: st.none(),
        type(None): st.none(),
        dt.datetime: st.datetimes(timezones=_offsets()),
        dt.date: st.dates(),
        dt.time: st.times(timezones=_offsets()),
        uuid.UUID: st.uuids(),
    }
    if tp in scalars:
        return scalars[tp]
    if tp is Any:
        return st.none() | st.integers(0, 9) | st.text(max_size=4)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([values(arg) for arg in args])
    if origin is list:
        return st.lists(values(args[0]), max_size=3)
    if origin is set:
        return st.sets(values(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=4), values(args[1]), max_size=3)
    if origin is tuple:
        return st.tuples(*(values(arg) for arg in args))
    if typing_extensions.is_typeddict(tp):
        hints = typing.get_type_hints(tp)
        return st.fixed_dictionaries(
            {k: values(hints[k]) for k in tp.__required_keys__},
            optional={k: values(hints[k]) for k in tp.__optional_keys__},
        )
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        fields = tp.model_fields
        return st.builds(tp, **{n: values(f.annotation) for n, f in fields.items()})
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return st.builds(tp, **{f.name: values(hints[f.name]) for f in dataclasses.fields(tp)})
    raise AssertionError(f"no strategy for {tp!r}")


#: Strings near the formats of the schemas: valid ones, and ones just off.
NEAR = [
    "2024-01-01", "2024-02-29", "2023-02-29", "2024-13-01", "2024-01-01T00:00:00Z",
    "2024-01-01T24:00:00", "2024-01-01T10:00:00.123+01:00", "12:00", "12:00:61", "25:00",
    "123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000", "not-a-uuid",
    "red", "blue", "circle", "a", "1", "", "1700000000",
]  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-SAFE_INT, SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6) | st.sampled_from(NEAR),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3) | st.sampled_from(["x", "kind", "city"]), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def mutated(data: st.DataObject, value: Any) -> Any:
    """``value`` with one thing changed somewhere in it."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        action = data.draw(st.sampled_from(["drop", "change", "add"]))
        out = dict(value)
        if action == "drop":
            del out[key]
        elif action == "change":
            out[key] = mutated(data, value[key])
        else:
            out[data.draw(st.text(max_size=3))] = data.draw(JSON)
        return out
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        out_list = list(value)
        out_list[index] = mutated(data, value[index])
        return out_list
    return data.draw(JSON)


@pytest.mark.parametrize("case", sorted(CASES))
@SETTINGS
@given(data=st.data())
def test_what_python_sends_is_accepted(case: str, data: st.DataObject) -> None:
    name = f"{case}Job"
    value = data.draw(values(CASES[case]))
    for which in ("data", "result"):
        wire = adapter(name, which).dump_python(value, mode="json")
        wire = json.loads(json.dumps(wire))  # as Node reads it
        errors = [e.message for e in VALIDATORS[(name, which)].iter_errors(wire)]
        assert not errors, f"{name} {which}: {wire!r} refused: {errors}"
        assert python_accepts(name, which, wire)


@pytest.mark.parametrize("case", sorted(CASES))
@SETTINGS
@given(data=st.data())
def test_what_the_schemas_accept_python_accepts(case: str, data: st.DataObject) -> None:
    name = f"{case}Job"
    value = adapter(name, "result").dump_python(data.draw(values(CASES[case])), mode="json")
    near = mutated(data, value)
    for which in ("data", "result"):
        if VALIDATORS[(name, which)].is_valid(near):
            assert python_accepts(name, which, near), f"{name} {which}: schema took {near!r}"


@pytest.mark.parametrize("fmt", sorted(PATTERNS))
@SETTINGS
@given(data=st.data())
def test_every_string_a_pattern_matches_python_reads(fmt: str, data: st.DataObject) -> None:
    text = data.draw(st.from_regex(PATTERNS[fmt]))
    typ = {"date-time": dt.datetime, "date": dt.date, "time": dt.time, "uuid": uuid.UUID}[fmt]
    from pydantic import TypeAdapter

    TypeAdapter(typ).validate_python(text)  # raises if Python refuses it


def test_what_node_writes_for_dates_is_accepted() -> None:
    """``new Date().toISOString()`` and the other spellings a Node producer would use."""
    for case, text in [
        ("DateTime", "2026-12-05T10:00:00.000Z"),
        ("DateTime", "2026-12-05T10:00:00+01:00"),
        ("Date", "2026-12-05"),
        ("Time", "10:00:00.000Z"),
        ("Uuid", "123E4567-E89B-12D3-A456-426614174000"),
    ]:
        assert VALIDATORS[(f"{case}Job", "data")].is_valid(text), (case, text)
        assert python_accepts(f"{case}Job", "data", text)
    for case, text in [("Date", "2023-02-29"), ("DateTime", "2026-12-05T24:00:00Z")]:
        assert not VALIDATORS[(f"{case}Job", "data")].is_valid(text), (case, text)
        assert not python_accepts(f"{case}Job", "data", text)


def test_a_result_field_with_a_default_is_required_in_the_result_schema() -> None:
    """Dumped results always hold every field of a model or dataclass; data may leave it out."""
    data, result = CONTRACT.jobs["AddressJob"].data, CONTRACT.jobs["AddressJob"].result
    assert isinstance(data, dict) and isinstance(result, dict)
    assert data["$defs"]["Address-Input"]["required"] == ["city"]
    assert result["$defs"]["Address-Output"]["required"] == ["city", "zip", "lines"]
