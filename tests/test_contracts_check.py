"""``contracts check``: each kind of breaking change is caught, compatible ones pass with a note.

A job's data must still accept what producers sent before (a change that refuses old payloads
breaks); its result must stay within what readers were promised (a change that gives readers
values they did not expect breaks). Each test builds the old and the new contract from job
classes, as ``contracts check`` does from the app and the committed export.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Literal, NotRequired

import pytest
from typing_extensions import TypedDict

from bullworker import BaseJob, JobRegistry
from bullworker.cli import run_cli
from bullworker.contracts import Change, Contract, build_contract, compare


def contract(**jobs: tuple[Any, ...]) -> Contract:
    """A contract of jobs ``name=(In, Out)`` or ``name=(In, Out, queue)``."""
    registry = JobRegistry()
    for name, (data, result, *queue) in jobs.items():
        body = {"handle": lambda self, d: d, "QUEUE_NAME": queue[0] if queue else None}
        cls = types.new_class(name, (BaseJob[data, result],), {}, lambda ns, b=body: ns.update(b))
        registry.register(cls)
    return build_contract(registry, "default")


def changes(old: Contract, new: Contract) -> list[tuple[str, str, bool]]:
    return [(c.where, c.message, c.breaking) for c in compare(old, new)]


class Invoice(TypedDict):
    customer: str
    amount: float
    note: NotRequired[str]


class Sent(TypedDict):
    id: str
    total: int
    status: Literal["sent", "queued"]
    sent_at: NotRequired[str]


OLD = contract(SendInvoice=(Invoice, Sent, "billing"), Refund=(int, bool))


def with_data(data: Any) -> Contract:
    return contract(SendInvoice=(data, Sent, "billing"), Refund=(int, bool))


def with_result(result: Any) -> Contract:
    return contract(SendInvoice=(Invoice, result, "billing"), Refund=(int, bool))


def test_the_same_classes_have_no_changes() -> None:
    assert compare(OLD, contract(SendInvoice=(Invoice, Sent, "billing"), Refund=(int, bool))) == []


# --- breaking --------------------------------------------------------------------------


def test_a_data_field_removed_breaks() -> None:
    class NoAmount(TypedDict):
        customer: str
        note: NotRequired[str]

    assert changes(OLD, with_data(NoAmount)) == [("data.amount", "field removed", True)]


def test_a_data_field_made_required_breaks() -> None:
    class NoteRequired(TypedDict):
        customer: str
        amount: float
        note: str

    assert changes(OLD, with_data(NoteRequired)) == [("data.note", "field made required", True)]


def test_a_new_required_data_field_breaks() -> None:
    class WithCurrency(TypedDict):
        customer: str
        amount: float
        note: NotRequired[str]
        currency: str

    assert changes(OLD, with_data(WithCurrency)) == [("data.currency", "new required field", True)]


def test_a_data_type_narrowed_breaks() -> None:
    class WholeAmounts(TypedDict):
        customer: str
        amount: int
        note: NotRequired[str]

    assert changes(OLD, with_data(WholeAmounts)) == [
        ("data.amount", "type narrowed from number to integer", True)
    ]


def test_a_data_type_changed_breaks() -> None:
    class TextAmount(TypedDict):
        customer: str
        amount: str
        note: NotRequired[str]

    assert changes(OLD, with_data(TextAmount)) == [
        ("data.amount", "type changed from number to string", True)
    ]


def test_an_enum_value_removed_from_the_data_breaks() -> None:
    old = contract(Paint=(Literal["red", "green"], None))
    new = contract(Paint=(Literal["red"], None))
    assert changes(old, new) == [("data", 'no longer allows "green" (now "red")', True)]


def test_a_job_removed_breaks() -> None:
    assert changes(OLD, contract(SendInvoice=(Invoice, Sent, "billing"))) == [
        ("", "job removed: producers that queue it break", True)
    ]
    assert compare(OLD, contract(SendInvoice=(Invoice, Sent, "billing")))[0].job == "Refund"


def test_a_job_renamed_breaks() -> None:
    new = contract(SendInvoice=(Invoice, Sent, "billing"), RefundPayment=(int, bool))
    found = compare(OLD, new)
    assert [(c.job, c.message, c.breaking) for c in found] == [
        ("Refund", "job renamed to 'RefundPayment' (or removed): producers that queue it break", True),
        ("RefundPayment", "new job", False),
    ]  # fmt: skip


def test_a_queue_changed_breaks() -> None:
    new = contract(SendInvoice=(Invoice, Sent, "invoices"), Refund=(int, bool))
    assert changes(OLD, new) == [("queue", "changed from 'billing' to 'invoices'", True)]


def test_a_result_field_removed_breaks() -> None:
    class NoTotal(TypedDict):
        id: str
        status: Literal["sent", "queued"]
        sent_at: NotRequired[str]

    assert changes(OLD, with_result(NoTotal)) == [("result.total", "field removed", True)]


def test_a_result_field_made_optional_breaks() -> None:
    class MaybeTotal(TypedDict):
        id: str
        total: NotRequired[int]
        status: Literal["sent", "queued"]
        sent_at: NotRequired[str]

    assert changes(OLD, with_result(MaybeTotal)) == [
        ("result.total", "field made optional: results may lack it", True)
    ]


def test_a_result_type_widened_breaks() -> None:
    class NullableTotal(TypedDict):
        id: str
        total: int | None
        status: Literal["sent", "queued", "failed"]
        sent_at: NotRequired[str]

    assert changes(OLD, with_result(NullableTotal)) == [
        ("result.total", "type widened from integer to integer | null", True),
        ("result.status", 'now also allows "failed" (was "sent" | "queued")', True),
    ]


# --- compatible ------------------------------------------------------------------------


def test_a_new_optional_data_field_is_compatible() -> None:
    class WithCurrency(TypedDict):
        customer: str
        amount: float
        note: NotRequired[str]
        currency: NotRequired[str]

    assert changes(OLD, with_data(WithCurrency)) == [("data.currency", "new optional field", False)]


def test_a_new_job_is_compatible() -> None:
    new = contract(SendInvoice=(Invoice, Sent, "billing"), Refund=(int, bool), Ping=(None, None))
    assert [(c.job, c.message, c.breaking) for c in compare(OLD, new)] == [
        ("Ping", "new job", False)
    ]


def test_a_widened_data_type_is_compatible() -> None:
    class Looser(TypedDict):
        customer: str | None
        amount: float | str
        note: NotRequired[str]

    assert changes(OLD, with_data(Looser)) == [
        ("data.customer", "type widened from string to string | null", False),
        ("data.amount", "type widened from number to number | string", False),
    ]
    assert changes(OLD, contract(SendInvoice=(Invoice, Sent, "billing"), Refund=(float, bool))) == [
        ("data", "type widened from integer to number", False)
    ]


def test_a_data_field_made_optional_and_a_narrower_result_are_compatible() -> None:
    class OptionalAmount(TypedDict):
        customer: str
        amount: NotRequired[float]
        note: NotRequired[str]

    class SentOnly(TypedDict):
        id: str
        total: int
        status: Literal["sent"]
        sent_at: str
        channel: str

    new = contract(SendInvoice=(OptionalAmount, SentOnly, "billing"), Refund=(int, bool))
    assert changes(OLD, new) == [
        ("data.amount", "field made optional", False),
        ("result.status", 'no longer allows "queued" (now "sent")', False),
        ("result.sent_at", "field now always present", False),
        ("result.channel", "new field", False),
    ]


def test_recursive_types_are_compared_once() -> None:
    class Node(TypedDict):
        name: str
        children: list[Node]

    class Node2(TypedDict):
        name: str
        children: list[Node2]
        size: NotRequired[int]

    assert changes(contract(Tree=(Node, None)), contract(Tree=(Node2, None))) == [
        ("data.size", "new optional field", False)
    ]


class Line(TypedDict):
    sku: str
    qty: int


class Line2(TypedDict):
    sku: str


class Order(TypedDict):
    lines: list[Line]
    by_sku: dict[str, Line]


class Order2(TypedDict):
    lines: list[Line2]
    by_sku: dict[str, Line2]


def test_nested_changes_name_their_path() -> None:
    assert changes(contract(Ship=(Order, None)), contract(Ship=(Order2, None))) == [
        ("data.lines[].qty", "field removed", True)  # Line is compared once, where first met
    ]


# --- the command -----------------------------------------------------------------------

APP = """\
from typing_extensions import NotRequired, TypedDict

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

reg = JobRegistry()


class Invoice(TypedDict):
    customer: str
    amount: {amount}
{extra}

@worker_job(registry=reg)
class SendInvoice(BaseJob[Invoice, bool]):
    QUEUE_NAME = "billing"

    def handle(self, data: Invoice) -> bool:
        return True


app = create_app(config=AppConfig(), registry=reg)
"""


def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **fields: str) -> str:
    """An app module ``name`` in ``tmp_path`` (on sys.path); its ``--app`` spec."""
    text = APP.format(amount=fields.get("amount", "float"), extra=fields.get("extra", ""))
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:app"


def test_the_command_exits_1_on_a_breaking_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = app_module(tmp_path, monkeypatch, "contract_app_v1")
    out = tmp_path / "contract"
    assert (
        run_cli(["contracts", "export", "--format", "jsonschema", "--out", str(out), "--app", old])
        == 0
    )
    assert run_cli(["contracts", "export", "--out", str(out), "--app", old]) == 0
    capsys.readouterr()
    assert run_cli(["contracts", "check", "--against", str(out), "--app", old]) == 0
    assert capsys.readouterr().out == f"no changes against {out}\n"

    new = app_module(tmp_path, monkeypatch, "contract_app_v2", amount="int",
                     extra="    note: NotRequired[str]\n")  # fmt: skip
    for against in (out, out / "jobs.ts"):  # the jsonschema export, or the contract in jobs.ts
        assert run_cli(["contracts", "check", "--against", str(against), "--app", new]) == 1
        printed = capsys.readouterr()
        assert printed.out.splitlines() == [
            "breaking    SendInvoice data.amount: type narrowed from number to integer",
            "compatible  SendInvoice data.note: new optional field",
        ]
        assert printed.err == f"error: 1 breaking change against {against}\n"

    assert run_cli(["contracts", "check", "--against", str(out), "--app", new, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["breaking"] == 1 and len(report["changes"]) == 2
    assert report["changes"][1] == {"job": "SendInvoice", "where": "data.note",
                                    "change": "new optional field", "breaking": False}  # fmt: skip


def test_the_command_passes_compatible_changes_and_compares_two_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = app_module(tmp_path, monkeypatch, "contract_app_v3")
    new = app_module(tmp_path, monkeypatch, "contract_app_v4", amount="float | str")
    assert run_cli(["contracts", "export", "--out", str(tmp_path / "old"), "--app", old]) == 0
    assert run_cli(["contracts", "export", "--out", str(tmp_path / "new"), "--app", new]) == 0
    capsys.readouterr()
    command = ["contracts", "check", "--against", str(tmp_path / "old")]
    assert run_cli([*command, "--current", str(tmp_path / "new")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "compatible  SendInvoice data.amount: type widened from number to number | string",
        f"1 compatible change against {tmp_path / 'old'}",
    ]
    assert run_cli([*command, "--app", new]) == 0  # the same, from the classes


def test_a_missing_export_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["contracts", "check", "--against", str(tmp_path), "--current", str(tmp_path)])
    assert code == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path} holds no contract: neither index.json nor jobs.ts is there\n"
    )


def test_change_reads_as_a_line() -> None:
    assert str(Change("A", "data.x", "field removed", True)) == "A data.x: field removed"
    assert str(Change("A", "", "new job", False)) == "A: new job"
