"""Job classes, registry rules, payload/result validation and option checks."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from typing import Any, NotRequired, TypedDict

import pytest
from pydantic import BaseModel

from bullworker import (
    AppConfig,
    BaseJob,
    JobDefinitionError,
    JobRegistry,
    PayloadError,
    ResultError,
    create_app,
    worker_job,
)
from bullworker.core.jobs import check_json
from bullworker.producer import check_options
from bullworker.testing import UnrecoverableError, run_job


class Address(TypedDict):
    city: str


class Person(TypedDict):
    name: str
    age: int
    address: Address
    nickname: NotRequired[str]


class Point(BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Size:
    w: int
    h: int


def test_name_is_the_class_name_and_queue_defaults() -> None:
    reg = JobRegistry()

    @worker_job(registry=reg)
    class Hello(BaseJob[dict[str, Any], None]):
        async def handle(self, data: dict[str, Any]) -> None: ...

    definition = reg.get("Hello")
    assert definition.cls is Hello
    assert definition.queue("default") == "default"
    assert definition.is_async
    assert reg.names() == ["Hello"]


def test_explicit_name_queue_and_sync_handler() -> None:
    reg = JobRegistry()

    @worker_job(name="hello.v2", registry=reg)
    class Hello(BaseJob[dict[str, Any], int]):
        QUEUE_NAME = "mail"

        def handle(self, data: dict[str, Any]) -> int:
            return 1

    definition = reg.definition_of(Hello)
    assert definition.name == "hello.v2"
    assert definition.queue("default") == "mail"
    assert not definition.is_async
    assert reg.queues("default") == ["mail"]


def test_duplicate_names_are_an_error_at_import() -> None:
    reg = JobRegistry()

    @worker_job(registry=reg)
    class Twin(BaseJob[Any, Any]):
        async def handle(self, data: Any) -> None: ...

    def elsewhere() -> None:
        @worker_job(registry=reg)
        class Twin(BaseJob[Any, Any]):
            async def handle(self, data: Any) -> None: ...

    with pytest.raises(JobDefinitionError, match="already used"):
        elsewhere()
    assert reg.get("Twin").cls is Twin


def test_bad_declarations_fail_with_the_class_named() -> None:
    reg = JobRegistry()
    with pytest.raises(JobDefinitionError, match="NoHandle must define handle"):

        @worker_job(registry=reg)
        class NoHandle(BaseJob[Any, Any]):
            pass

    with pytest.raises(JobDefinitionError, match=r"BadCron.CRON_SCHEDULE '61 \* \* \* \*'"):

        @worker_job(registry=reg)
        class BadCron(BaseJob[Any, Any]):
            CRON_SCHEDULE = "61 * * * *"

            async def handle(self, data: Any) -> None: ...

    with pytest.raises(JobDefinitionError, match="QUEUE_NAME"):

        @worker_job(registry=reg)
        class BadQueue(BaseJob[Any, Any]):
            QUEUE_NAME = "a:b"

            async def handle(self, data: Any) -> None: ...

    with pytest.raises(JobDefinitionError, match="needs a BaseJob subclass"):
        reg.register(int)  # type: ignore[arg-type]


def _definition(in_type: Any, out_type: Any = Any) -> Any:
    reg = JobRegistry()

    class Job(BaseJob[in_type, out_type]):  # type: ignore[valid-type]
        async def handle(self, data: Any) -> Any:
            return data

    return reg.register(Job)


def test_typeddict_payload_validation_names_the_field() -> None:
    definition = _definition(Person)
    good = {"name": "Ada", "age": 36, "address": {"city": "London"}}
    assert definition.to_wire(good) == good
    with pytest.raises(PayloadError, match=r"address\.city: Field required"):
        definition.to_wire({"name": "Ada", "age": 36, "address": {}})
    with pytest.raises(PayloadError, match="age: Input should be a valid integer"):
        definition.validate_input({"name": "Ada", "age": "old", "address": {"city": "x"}})


def test_models_and_dataclasses_are_dumped_to_json_and_rebuilt() -> None:
    point = _definition(Point)
    assert point.to_wire(Point(x=1, y=2)) == {"x": 1, "y": 2}
    assert point.validate_input({"x": 1, "y": 2}) == Point(x=1, y=2)
    size = _definition(Size)
    assert size.to_wire(Size(3, 4)) == {"w": 3, "h": 4}
    assert size.validate_input({"w": 3, "h": 4}) == Size(3, 4)


async def test_a_model_in_and_a_dataclass_out_through_the_runners_dispatch() -> None:
    reg = JobRegistry()

    @worker_job(registry=reg)
    class Scale(BaseJob[Point, Size]):
        def handle(self, data: Point) -> Size:
            return Size(data.x * 2, data.y * 2)

    app = create_app(config=AppConfig(environ={}, app_env="test"), registry=reg, tracing=False)
    assert await run_job(app, Scale, {"x": 1, "y": 2}) == Size(2, 4)
    assert await run_job(app, Scale, Point(x=2, y=3)) == Size(4, 6)
    with pytest.raises(
        UnrecoverableError, match=r"^PayloadError: Scale: invalid payload: y: Field"
    ):
        await run_job(app, Scale, {"x": 1})


def test_the_runner_builds_every_validator_before_the_first_job() -> None:
    reg = JobRegistry()

    @worker_job(registry=reg)
    class Scale(BaseJob[Point, Size]):
        def handle(self, data: Point) -> Size:
            return Size(data.x, data.y)

    app = create_app(
        config=AppConfig(environ={}, app_env="test"),
        registry=reg,
        tracing=False,
        enable_worker=True,
    )
    [definition] = list(reg)
    assert definition._adapters == {}  # built on first use, or by the runner's start checks
    app.create_runner().check_dependencies()
    assert set(definition._adapters) == {"in", "out"}
    assert definition._adapters["in"] is not None and definition._adapters["out"] is not None


def test_untyped_jobs_accept_any_json_and_none_becomes_empty_object() -> None:
    definition = _definition(Any)
    assert definition.to_wire(None) == {}
    assert definition.to_wire([1, "two", None]) == [1, "two", None]


def test_results_must_be_json() -> None:
    definition = _definition(Any, Any)
    assert definition.result_to_wire({"a": [1, 2.5]}) == {"a": [1, 2.5]}
    assert definition.result_to_wire(Point(x=1, y=2)) == {"x": 1, "y": 2}
    with pytest.raises(ResultError, match="not JSON"):
        definition.result_to_wire({1, 2})
    with pytest.raises(ResultError, match="not valid JSON"):
        definition.result_to_wire({"x": math.nan})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"n": 2**53}, r"n: integer .* beyond 2\^53"),
        ({"f": math.inf}, "f: inf is not valid JSON"),
        ({"s": {1, 2}}, "s: set is not JSON"),
        ({1: "x"}, "key 1 is not a string"),
        ({"deep": [{"x": object()}]}, r"deep\[0\]\.x: object is not JSON"),
    ],
)
def test_check_json_rejects_what_node_cannot_read(value: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        check_json(value)


def test_check_json_accepts_unicode_and_nesting() -> None:
    check_json(
        {"é": ["\u2028", "\x00", "🎉", {"n": -(2**53 - 1), "f": 1.5, "b": False, "z": None}]}
    )


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"jobId": "123"}, "cannot be an integer"),
        ({"jobId": "a:b"}, "cannot contain ':'"),
        ({"priority": 2_097_153}, "priority must be an integer"),
        ({"priority": 1.5}, "priority must be an integer"),
        ({"repeat": {"every": 1000}}, "CRON_SCHEDULE"),
        ({"delay": -1}, "delay must be"),
        ({"attempts": 0}, "attempts must be"),
        ({"backoff": {"delay": 1}}, "backoff must be"),
        ({"deduplication": {}}, "deduplication needs an 'id'"),
        ({"colour": "red"}, "unknown job option"),
        # Types BullMQ's Lua scripts do not check (a bad one lost the job when it failed).
        ({"backoff": {"type": "fixed", "delay": "x"}}, "backoff.delay must be"),
        ({"backoff": -3}, "backoff must be"),
        ({"backoff": {"type": "fixed", "jitter": "x"}}, "backoff.jitter must be"),
        ({"attempts": True}, "attempts must be"),
        ({"delay": 1.5}, "delay must be"),
        ({"removeOnComplete": "yes"}, "removeOnComplete must be"),
        ({"removeOnFail": {"age": "1h"}}, "removeOnFail must be"),
        ({"deduplication": {"id": "x", "ttl": "x"}}, "deduplication.ttl must be"),
        ({"deduplication": {"id": 7}}, "deduplication needs an 'id'"),
        ({"lifo": 1}, "lifo must be"),
        ({"keepLogs": -1}, "keepLogs must be"),
        ({"traceparent": 1}, "traceparent must be"),
    ],
)
def test_job_options_are_validated_like_node(opts: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        check_options(opts)


def test_valid_options_pass_through_unchanged() -> None:
    opts = {
        "delay": 0,
        "priority": 10,
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 100},
        "jobId": "order-42",
        "deduplication": {"id": "x", "ttl": 1000},
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "removeOnComplete": {"age": 3600, "count": 100},
        "removeOnFail": 50,
        "lifo": True,
    }
    assert check_options(dict(opts)) == opts


def test_the_package_exports_load_on_first_use() -> None:
    import bullworker

    assert sorted(bullworker.__all__) == sorted(bullworker._EXPORTS)
    for name in bullworker.__all__:
        value = getattr(bullworker, name)
        assert getattr(value, "__name__", name) == name  # default_registry is an instance
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        bullworker.nope  # noqa: B018
    probe = "import sys, bullworker.cli; print('bullmq' in sys.modules, 'redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]  # `bullworker --help` stays light
