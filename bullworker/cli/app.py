"""The ``bullworker`` Typer app and what its commands share: options, errors, tables."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import typer

T = TypeVar("T")

cli = typer.Typer(
    help="Run and queue bullworker jobs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        envvar="BULLWORKER_APP",
        help="The app as module[:attribute] (attribute default 'app').",
        show_envvar=True,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load(spec: str | None) -> Any:
    """The app named by ``--app``; a load error is one line and exit code 2."""
    from bullworker.ops.serve import AppLoadError, load_app

    try:
        return load_app(spec)
    except AppLoadError as exc:
        fail(str(exc), 2)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run the library call; expected errors become one line on stderr."""
    from bullworker.core.errors import BullworkerError

    try:
        return asyncio.run(work)
    except BullworkerError as exc:
        fail(str(exc))


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain left-aligned columns; None shows as ``-``."""
    cells = [[str(h) for h in headers]]
    cells += [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
