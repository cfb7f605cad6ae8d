"""``contracts import``: typed Python from a Node service's JSON Schemas, checked by mypy --strict.

The generated module passes ``mypy --strict``; a producer that calls its functions with a field
of the wrong type, without a required field, or with another job's data does not (mypy runs as
a subprocess, as in a service's CI). At run time the functions queue the jobs by name, on their
queues.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bullworker import AppConfig, create_app
from bullworker.cli import run_cli
from bullworker.contracts import read_schemas, render_python
from bullworker.testing import queued
from tests.contracts_support import GENERATED

ROOT = Path(__file__).resolve().parents[1]

#: The jobs of a Node service, as it would describe them: inline schemas, $defs, a recursive
#: type, a closed tuple, enums, a nullable object, keys that are not identifiers.
NODE_JOBS: dict[str, Any] = {
    "ResizeImage": {
        "queue": "images",
        "data": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Where the image is."},
                "width": {"type": "integer", "minimum": 1},
                "format": {"enum": ["png", "jpeg", "webp"]},
                "crop": {
                    "type": ["object", "null"],
                    "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                    "required": ["x", "y"],
                },
                "tags": {"type": "array", "items": {"type": "string"}},
                "max-age": {"type": "integer"},
            },
            "required": ["path", "width"],
        },
        "result": {
            "$ref": "#/$defs/Image",
            "$defs": {
                "Image": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "size": {"$ref": "#/$defs/Size"},
                        "variants": {"type": "array", "items": {"$ref": "#/$defs/Image"}},
                    },
                    "required": ["path", "size"],
                },
                "Size": {
                    "type": "array",
                    "prefixItems": [{"type": "integer"}, {"type": "integer"}],
                    "items": False,
                },
            },
        },
    },
    "notify-user": {
        "data": {
            "type": "object",
            "properties": {
                "user": {"type": "string"},
                "channel": {"const": "email"},
                "meta": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
            },
            "required": ["user"],
        },
        "result": {"type": "null"},
    },
}

GOOD_CALLER = """\
from bullworker import WorkerService

from node_jobs import Image, queue_job, queue_notify_user, queue_resize_image


async def produce(workers: WorkerService) -> list[Image]:
    handle = await queue_resize_image(
        workers, {"path": "a.png", "width": 640, "format": "webp", "crop": {"x": 0, "y": 1.5}}
    )
    await queue_notify_user(workers, {"user": "ada", "meta": {"retries": 3, "urgent": True}})
    await queue_job(workers, "notify-user", {"user": "ada", "channel": "email"})
    image: Image = await handle.result(timeout=10)
    width, height = image["size"]
    return image.get("variants", []) if width > height else []
"""

BAD_CALLS = {
    "a field of the wrong type": (
        'await queue_resize_image(workers, {"path": "a.png", "width": "640"})',
        'error: Incompatible types (expression has type "str", TypedDict item "width" has type "int")',
    ),
    "a missing required field": (
        'await queue_resize_image(workers, {"path": "a.png"})',
        'error: Missing key "width" for TypedDict "ResizeImageData"',
    ),
    "a value outside an enum": (
        'await queue_resize_image(workers, {"path": "a.png", "width": 1, "format": "gif"})',
        "error: Incompatible types (expression has type \"Literal['gif']\", TypedDict item "
        "\"format\" has type \"Literal['png', 'jpeg', 'webp']\")",
    ),
    "another job's data by name": (
        'await queue_job(workers, "ResizeImage", {"user": "ada"})',
        'error: No overload variant of "queue_job" matches argument types',
    ),
}


def generate(tmp_path: Path, jobs: Any = NODE_JOBS, name: str = "node_jobs") -> Path:
    source = tmp_path / f"{name}.json"
    source.write_text(json.dumps(jobs))
    module = tmp_path / f"{name}.py"
    assert run_cli(["contracts", "import", str(source), "--out", str(module)]) == 0
    return module


def mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` of ``files`` (run from the repository: its cache, bullworker's types)."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-color-output", *map(str, files)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_generated_module_passes_mypy_strict_and_so_does_a_good_caller(
    tmp_path: Path,
) -> None:
    module = generate(tmp_path)
    caller = tmp_path / "caller.py"
    caller.write_text(GOOD_CALLER)
    result = mypy(module, caller)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_a_wrong_call_fails_mypy(tmp_path: Path, case: str) -> None:
    call, error = BAD_CALLS[case]
    module = generate(tmp_path)
    caller = tmp_path / "caller.py"
    caller.write_text(
        "from bullworker import WorkerService\n\n"
        "from node_jobs import queue_job, queue_resize_image\n\n\n"
        f"async def produce(workers: WorkerService) -> None:\n    {call}\n"
    )
    result = mypy(module, caller)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"caller.py:7: {error}" in result.stdout, result.stdout


def test_the_generated_types(tmp_path: Path) -> None:
    text = generate(tmp_path).read_text()
    assert (
        """\
ResizeImageData = TypedDict(
    "ResizeImageData",
    {
        "path": str,
        "width": int,
        "format": NotRequired[Literal["png", "jpeg", "webp"]],
        "crop": 'NotRequired[ResizeImageDataCrop | None]',
        "tags": NotRequired[list[str]],
        "max-age": NotRequired[int],
    },
)"""
        in text
    )  # "max-age" is no identifier: the functional syntax
    assert "class Image(TypedDict):\n    path: str\n    size: Size\n" in text
    assert "Size: TypeAlias = tuple[int, int]\n" in text
    assert "    meta: NotRequired[dict[str, str | float | bool]]\n" in text
    assert '    channel: NotRequired[Literal["email"]]\n' in text


async def test_the_functions_queue_by_name_on_the_jobs_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(tmp_path, name="node_jobs_runtime")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("node_jobs_runtime")
    app = create_app(config=AppConfig(environ={"APP_ENV": "test"}))
    handle = await module.queue_resize_image(
        app.worker_service, {"path": "a", "width": 1}, priority=3
    )
    await module.queue_job(app.worker_service, "notify-user", {"user": "ada"})
    [resize, notify] = queued(app)
    assert (resize.id, resize.name, resize.queue, resize.data) == (
        handle,
        "ResizeImage",
        "images",
        {"path": "a", "width": 1},
    )
    assert resize.opts["priority"] == 3
    assert (notify.name, notify.queue, notify.data) == ("notify-user", "default", {"user": "ada"})


def test_an_export_imports_back(tmp_path: Path) -> None:
    """A Python service's own export, imported by another Python service, is typed the same."""
    module = tmp_path / "billing_jobs.py"
    index = GENERATED / "index.json"
    assert run_cli(["contracts", "import", str(index), "--out", str(module)]) == 0
    text = module.read_text()
    assert 'class Invoice(TypedDict):\n    """An invoice to send to a customer."""\n' in text
    assert 'Currency: TypeAlias = Literal["EUR", "USD"]\n' in text
    caller = tmp_path / "caller.py"
    caller.write_text(
        "from bullworker import WorkerService\n\nfrom billing_jobs import queue_send_invoice\n\n\n"
        "async def bill(workers: WorkerService) -> float:\n"
        '    handle = await queue_send_invoice(workers, {"customer": "ACME", "due": "2026-12-31",'
        ' "lines": [{"sku": "A", "quantity": 1, "unit_price": 2.5}], "currency": "USD"})\n'
        "    sent = await handle.result(timeout=10)\n"
        '    return sent["total"]\n'
    )
    result = mypy(module, caller)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_schema_alone(tmp_path: Path) -> None:
    schema = tmp_path / "order.json"
    schema.write_text(json.dumps({
        "title": "Order",
        "type": "object",
        "properties": {"id": {"type": "integer"}, "item": {"$ref": "#/$defs/Item"}},
        "required": ["id"],
        "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
    }))  # fmt: skip
    types_only = render_python(read_schemas(schema), "order.json")
    assert "class Order(TypedDict):\n    id: int\n    item: NotRequired[Item]\n" in types_only
    assert "class Item(TypedDict):\n    sku: NotRequired[str]\n" in types_only
    assert "async def" not in types_only and "Its types, as TypedDicts" in types_only
    as_job = render_python(read_schemas(schema, job="PlaceOrder"), "order.json")
    assert (
        "async def queue_place_order(\n    workers: WorkerService, data: PlaceOrderData," in as_job
    )
    assert "PlaceOrderResult: TypeAlias = Any\n" in as_job
    module = tmp_path / "order_jobs.py"
    module.write_text(as_job)
    result = mypy(module)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate(tmp_path)
    assert capsys.readouterr().out == f"wrote {tmp_path / 'node_jobs.py'} (2 jobs)\n"
    (tmp_path / "bad.json").write_text('{"$ref": "#/$defs/Missing"}')
    code = run_cli(
        ["contracts", "import", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.py")]
    )
    assert code == 1
    assert "no such definition" in capsys.readouterr().err


def test_the_generated_module_in_the_docs_is_what_the_import_writes(tmp_path: Path) -> None:
    from tests.test_docs import read_blocks

    blocks = read_blocks(ROOT / "docs" / "contracts.md")
    [source] = [
        b for b in blocks if b.language == "text" and b.text.startswith('{\n  "ResizeImage"')
    ]
    [module] = [b for b in blocks if b.named_file == "node_jobs.py"]
    (tmp_path / "node-jobs.json").write_text(source.text)
    generated = render_python(read_schemas(tmp_path / "node-jobs.json"), "node-jobs.json")
    assert module.text == f"# node_jobs.py\n{generated}"
