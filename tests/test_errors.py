"""One error tree: every bullworker exception is defined in core/errors.py, derives from
BullworkerError, is exported from ``bullworker`` and is listed in docs/errors.md."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
from pathlib import Path

import pytest

import bullworker
from bullworker.core import errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bullworker"
DOC = ROOT / "docs" / "errors.md"

#: The one exception class defined elsewhere: it must subclass bullmq's UnrecoverableError,
#: so it lives in the BullMQ seam (core imports nothing from bullmq).
SEAM = {("bullworker.transport.bullmq_compat.worker", "MalformedJobError")}

CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == errors.__name__
}

_BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if inspect.isclass(value) and issubclass(value, BaseException)
}


def _base_name(node: ast.expr) -> str:
    """``Exception`` for ``Exception``, ``UnrecoverableError`` for ``bullmq.UnrecoverableError``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def exception_classes(tree: ast.AST) -> list[str]:
    """Names of the classes in ``tree`` (nested ones too) that derive from an exception.

    A base counts as an exception when it is a builtin exception, a class of
    core/errors.py, is named ``...Error``/``...Exception``, or is an exception
    class of the same module.
    """
    classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    known = _BUILTIN_EXCEPTIONS | set(CLASSES)
    found: list[str] = []
    changed = True
    while changed:  # a class may derive from one defined later in the module
        changed = False
        for node in classes:
            if node.name in found:
                continue
            bases = {_base_name(base) for base in node.bases}
            if any(b in known or b.endswith(("Error", "Exception")) for b in bases):
                found.append(node.name)
                known.add(node.name)
                changed = True
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_every_error_derives_from_bullworker_error() -> None:
    assert "BullworkerError" in CLASSES
    assert [n for n, cls in CLASSES.items() if not issubclass(cls, errors.BullworkerError)] == []


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_error_is_exported(name: str) -> None:
    assert getattr(bullworker, name) is CLASSES[name]
    assert name in bullworker.__all__


def test_no_exception_class_outside_core_errors() -> None:
    elsewhere = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "core" / "errors.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        elsewhere |= {(module_name(path), name) for name in exception_classes(tree)}
    assert elsewhere - SEAM == set()


def test_the_seam_error_is_a_bullworker_error() -> None:
    from bullmq import UnrecoverableError

    for module, name in SEAM:
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, errors.BullworkerError) and issubclass(cls, UnrecoverableError)


def test_the_walk_finds_exception_classes() -> None:
    source = (
        "import bullmq\n"
        "class A(ValueError): pass\n"
        "class B(C): pass\n"
        "class C(bullmq.UnrecoverableError): pass\n"
        "class D(StoreError): pass\n"
        "class E(dict): pass\n"
        "def f():\n    class G(Exception): pass\n"
    )
    assert sorted(exception_classes(ast.parse(source))) == ["A", "B", "C", "D", "G"]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("bullworker.core.durations", "DurationError"),
        ("bullworker.history.store", "StoreError"),
        ("bullworker.history.store", "StoreUnavailable"),
        ("bullworker.history.store.base", "StoreError"),
        ("bullworker.history.store.base", "StoreUnavailable"),
        ("bullworker.observe.metrics", "MetricsError"),
        ("bullworker.ops.inspect", "OpsError"),
        ("bullworker.ops.serve", "AppLoadError"),
        ("bullworker.runtime.runner", "JobFailed"),
        ("bullworker.transport.leader", "LeaderError"),
    ],
)
def test_old_import_paths_still_work(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is CLASSES[name]


def _doc_cells() -> dict[str, list[str]]:
    """Class name -> the cells of its row in the table of docs/errors.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        named = re.fullmatch(r"`(\w+)`", cells[0])
        if named:
            rows[named.group(1)] = cells
    return rows


def _doc_rows() -> dict[str, list[str]]:
    """Class name -> the names in its Parent cell, for each row of the table in docs/errors.md."""
    return {name: re.findall(r"`(\w+)`", cells[1]) for name, cells in _doc_cells().items()}


def test_the_doc_lists_every_error_with_its_parents() -> None:
    rows = _doc_rows()
    assert set(rows) == set(CLASSES) | {name for _, name in SEAM}
    for name, cls in CLASSES.items():
        assert rows[name] == [base.__name__ for base in cls.__bases__], name


def test_the_doc_gives_each_error_its_exit_code() -> None:
    seam = {name: getattr(importlib.import_module(module), name) for module, name in SEAM}
    for name, cls in {**CLASSES, **seam}.items():
        assert _doc_cells()[name][-1] == str(cls.exit_code), name


def test_the_exit_codes_table_lists_every_code() -> None:
    codes = {getattr(errors, n) for n in dir(errors) if n.startswith("EXIT_")}
    assert codes == {0, 1, 2, 3, 4}
    text = DOC.read_text()
    table = text[text.index("## Exit codes") :].split("\n\n")[2]
    listed = [int(line.split("|")[1]) for line in table.splitlines()[2:]]
    assert listed == sorted(codes)
    assert {cls.exit_code for cls in CLASSES.values()} <= codes
