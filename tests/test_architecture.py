"""The package's layers: imports only point down, and no module imports itself in a circle.

The layers, highest first (docs/architecture.md explains each)::

    cli                    the command line (``bullworker dashboard`` serves the dashboard)
    dashboard | asgi | testing   the web dashboard, the ASGI integration, the inline test runner
    ops | contracts        inspection, retry, doctor, schedules, running a runner process |
                           job contracts shared with Node (export, check, import)
    app                    create_app / App: composes everything below
    observe                metrics, health, tracing
    runtime                runner, worker, cron service, supervisor, watchdog
    producer | history     queueing jobs | recording finished jobs into _jobs
    transport              Redis connections, the leader lease, the BullMQ seam
    config                 settings from the environment, TLS files, redaction
    core                   pure: jobs, options, cron expressions, trace context, keys, errors

A module may import from its own layer and from the layers below it; layers
joined by ``|`` do not import each other. Every import counts, also one inside
a function; only those under ``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bullworker"

#: Highest first; each entry is one layer, a tuple of independent siblings.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("dashboard", "asgi", "testing"),
    ("ops", "contracts"),
    ("app",),
    ("observe",),
    ("runtime",),
    ("producer", "history"),
    ("transport",),
    ("config",),
    ("core",),
]
#: Entry points above every layer.
ENTRY = ("bullworker", "bullworker.__main__")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            yield from (n for child in node.orelse for n in _import_nodes_in(child))
            continue
        yield from _import_nodes_in(node)


def _import_nodes_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _import_nodes(node)


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (at run time)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> tuple[int, str] | None:
    """(index in LAYERS, sibling name), or None for the entry points."""
    if module in ENTRY:
        return None
    top = module.split(".")[1]
    for index, siblings in enumerate(LAYERS):
        if top in siblings:
            return index, top
    raise AssertionError(f"{module} belongs to no layer: add its folder to LAYERS")


def wrong_arrows(edges: dict[str, set[str]]) -> list[str]:
    """Every import that points up a layer, or sideways between sibling layers."""
    wrong = []
    for source, targets in sorted(edges.items()):
        here = layer_of(source)
        for target in sorted(targets):
            there = layer_of(target)
            if there is None:
                if here is not None:
                    wrong.append(f"{source} -> {target} (an entry point)")
                continue
            if here is None:
                continue
            if there[0] < here[0] or (there[0] == here[0] and there[1] != here[1]):
                wrong.append(f"{source} ({here[1]}) -> {target} ({there[1]})")
    return wrong


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_imports_only_point_down() -> None:
    assert wrong_arrows(graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_a_wrong_arrow_is_caught() -> None:
    """The contract itself: an upward, a sideways and a circular import are each reported."""
    edges = {
        "bullworker.core.jobs": {"bullworker.runtime.runner"},
        "bullworker.runtime.runner": {"bullworker.core.jobs"},
        "bullworker.producer": {"bullworker.history.recorder"},
        "bullworker.history.recorder": set(),
    }
    assert wrong_arrows(edges) == [
        "bullworker.core.jobs (core) -> bullworker.runtime.runner (runtime)",
        "bullworker.producer (producer) -> bullworker.history.recorder (history)",
    ]
    assert cycles(edges) == [["bullworker.core.jobs", "bullworker.runtime.runner"]]


def test_every_import_inside_a_function_is_seen(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from bullworker.app import App\n"
        "def f():\n    from ..runtime import runner\n    import bullworker.ops.inspect\n"
    )
    path = tmp_path / "x.py"
    path.write_text(source)
    known = {n: Path() for n in ("bullworker.app", "bullworker.runtime.runner",
                                 "bullworker.ops.inspect", "bullworker.core.x")}  # fmt: skip
    found = imports_of("bullworker.core.x", path, known)
    assert found == {"bullworker.runtime.runner", "bullworker.ops.inspect"}


def test_small_modules_and_a_short_top_level() -> None:
    long = {n: c for n, p in modules().items() if (c := len(p.read_text().splitlines())) > 420}
    assert long == {}, "split these modules (at most ~420 lines)"
    top = sorted(p.name for p in PACKAGE.iterdir() if p.name not in ("__pycache__", "py.typed"))
    assert len(top) <= 16, top
