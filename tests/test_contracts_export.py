"""``contracts export``: jobs.ts and the JSON Schema files, the same for the same classes.

What TypeScript compiles and what runs on the Node side is in
tests/integration/test_contracts_node.py; these tests need neither Node nor Redis.
"""

from __future__ import annotations

import datetime as dt
import json
import types
from pathlib import Path
from typing import Any, Literal, NotRequired

import pytest
from typing_extensions import TypedDict

from bullworker import BaseJob, JobRegistry
from bullworker.cli import run_cli
from bullworker.contracts import (
    Contract,
    build_contract,
    read_contract,
    render_typescript,
    write_export,
)
from bullworker.core.errors import JobDefinitionError, OpsError
from examples.contracts import tasks
from tests.contracts_support import GENERATED
from tests.contracts_types import catalog


def registry(**jobs: tuple[Any, ...]) -> JobRegistry:
    """Jobs ``name=(In, Out)`` or ``name=(In, Out, queue)``."""
    found = JobRegistry()
    for name, (data, result, *queue) in jobs.items():
        body = {"handle": lambda self, d: d, "QUEUE_NAME": queue[0] if queue else None}
        cls = types.new_class(name, (BaseJob[data, result],), {}, lambda ns, b=body: ns.update(b))
        found.register(cls, name=name)
    return found


class Item(TypedDict):
    """One line of an order."""

    sku: str
    qty: int
    note: NotRequired[str | None]


class Order(TypedDict):
    items: list[Item]
    at: dt.datetime
    kind: Literal["retail", "wholesale"]
    extra: dict[str, float]


def test_the_types_of_a_job() -> None:
    text = render_typescript(build_contract(registry(PlaceOrder=(Order, int, "orders")), "q"))
    assert 'import type { Job, JobsOptions, Queue } from "bullmq";' in text
    expected = """\
/** The data of the job PlaceOrder, as JSON. */
export type PlaceOrderData = Order;

/** The result of the job PlaceOrder, as JSON. */
export type PlaceOrderResult = number;

/** One line of an order. */
export interface Item {
  sku: string;
  qty: number;
  note?: string | null;
}

export interface Order {
  items: Item[];
  at: string;
  kind: "retail" | "wholesale";
  extra: { [key: string]: number };
}

/** Every job: the types of its data and result, and its queue. */
export interface Jobs {
  PlaceOrder: { data: PlaceOrderData; result: PlaceOrderResult; queue: "orders" };
}
"""
    assert expected in text


def test_names_that_are_not_identifiers() -> None:
    found = build_contract(registry(**{"send-email": (str, None)}), "mail")
    text = render_typescript(found)
    assert "export type sendEmailData = string;" in text
    assert (
        '  "send-email": { data: sendEmailData; result: sendEmailResult; queue: "mail" };' in text
    )


def test_exports_are_the_same_for_the_same_classes(tmp_path: Path) -> None:
    first = build_contract(catalog, "default")
    again = build_contract(reversed(list(catalog)), "default")  # registered in another order
    for name, contract in (("a", first), ("b", again)):
        write_export(contract, tmp_path / name, "typescript")
        write_export(contract, tmp_path / name, "jsonschema")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert "2026" not in (tmp_path / "a" / "jobs.ts").read_text()  # no timestamp


def test_the_jsonschema_export(tmp_path: Path) -> None:
    contract = build_contract(registry(PlaceOrder=(Order, int, "orders"), Ping=(None, None)), "q")
    (tmp_path / "Gone.data.schema.json").write_text("{}")  # a job of an earlier export
    (tmp_path / "README.md").write_text("ours")
    written = write_export(contract, tmp_path, "jsonschema")
    assert [p.name for p in written] == [
        "index.json", "Ping.data.schema.json", "Ping.result.schema.json",
        "PlaceOrder.data.schema.json", "PlaceOrder.result.schema.json",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(p.name for p in written), "README.md"]
    )
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["jobs"]["PlaceOrder"] == {
        "queue": "orders",
        "data": "PlaceOrder.data.schema.json",
        "result": "PlaceOrder.result.schema.json",
    }
    data = json.loads((tmp_path / "PlaceOrder.data.schema.json").read_text())
    assert data["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert data["$ref"] == "#/$defs/Order" and set(data["$defs"]) == {"Item", "Order"}
    assert data["$defs"]["Item"]["properties"]["qty"] == {
        "type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1
    }  # fmt: skip
    assert json.loads((tmp_path / "Ping.result.schema.json").read_text())["type"] == "null"


def test_both_formats_read_back_as_the_contract(tmp_path: Path) -> None:
    contract = build_contract(catalog, "default")
    write_export(contract, tmp_path / "ts", "typescript")
    write_export(contract, tmp_path / "js", "jsonschema")
    for path in (tmp_path / "ts", tmp_path / "ts" / "jobs.ts", tmp_path / "js"):
        assert read_contract(path) == contract, path
    assert read_contract(tmp_path / "js" / "index.json") == contract


def test_the_example_export_is_up_to_date(tmp_path: Path) -> None:
    """examples/contracts/generated is what the export writes for examples/contracts/tasks.py."""
    contract = build_contract(tasks.reg, "default")
    write_export(contract, tmp_path, "typescript")
    write_export(contract, tmp_path, "jsonschema")
    committed = sorted(p.name for p in GENERATED.iterdir())
    assert committed == sorted(p.name for p in tmp_path.iterdir())
    for name in committed:
        assert (GENERATED / name).read_text() == (tmp_path / name).read_text(), (
            f"examples/contracts/generated/{name} is stale: run the commands of "
            "examples/contracts/tasks.py's docstring"
        )


def test_a_type_without_a_json_schema_names_its_job() -> None:
    from collections.abc import Callable

    with pytest.raises(JobDefinitionError, match=r"^Hook: its data type has no JSON Schema"):
        build_contract(registry(Hook=(Callable[[], int], None)), "q")


def test_what_is_not_a_contract_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"type": "object"}')
    with pytest.raises(OpsError, match=r"a\.json: not a bullworker contract"):
        read_contract(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"format": "bullworker-contract", "version": 9, "jobs": {}}')
    with pytest.raises(OpsError, match=r"version 9; this bullworker reads"):
        read_contract(tmp_path / "b.json")
    (tmp_path / "c.ts").write_text("export const x = 1;\n")
    with pytest.raises(OpsError, match=r"not a bullworker jobs\.ts"):
        read_contract(tmp_path / "c.ts")
    (tmp_path / "d.json").write_text("{")
    with pytest.raises(OpsError, match=r"d\.json: not JSON"):
        read_contract(tmp_path / "d.json")
    assert read_contract_of({"jobs": {}}) == Contract({})


def read_contract_of(value: Any) -> Contract:
    return Contract.from_json(value, "here")


def test_the_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = ["--app", "examples.contracts.tasks:app"]
    assert run_cli(["contracts", "export", "--out", str(tmp_path), *app]) == 0
    assert (
        run_cli(["contracts", "export", "--format", "jsonschema", "--out", str(tmp_path), *app])
        == 0
    )
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {tmp_path / 'jobs.ts'} (2 jobs)",
        f"wrote {tmp_path / 'index.json'} and 4 schema files (2 jobs)",
    ]
    assert (tmp_path / "jobs.ts").read_text() == (GENERATED / "jobs.ts").read_text()
    (tmp_path / "file").write_text("")
    assert run_cli(["contracts", "export", "--out", str(tmp_path / "file"), *app]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'file'} is not a directory\n"


def test_the_excerpt_of_jobs_ts_in_the_docs_is_what_the_export_writes() -> None:
    from tests.test_docs import ROOT, read_blocks

    [excerpt] = [
        block.text
        for block in read_blocks(ROOT / "docs" / "contracts.md")
        if block.text.startswith("// examples/contracts/generated/jobs.ts\n")
    ]
    chunks = (GENERATED / "jobs.ts").read_text().split("\n\n")
    for chunk in excerpt.split("\n", 1)[1].rstrip("\n").split("\n\n"):
        assert chunk in chunks, f"docs/contracts.md: not in the generated jobs.ts:\n{chunk}"
