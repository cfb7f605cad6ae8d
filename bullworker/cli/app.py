"""The ``bullworker`` Typer app and what its commands share: options, errors, tables.

Every command runs through :func:`run_cli`, the one place errors become output and an
exit status: a `BullworkerError` prints ``error: <message>`` and exits with its class's
``exit_code``, a usage error prints ``error: ...`` and a ``Try ... --help`` line and
exits with 2 (docs/errors.md, "Exit codes").
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Coroutine, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from bullworker.core.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, BullworkerError

T = TypeVar("T")

cli = typer.Typer(
    help="Run and queue bullworker jobs.",
    add_completion=True,
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


#: Whether an error also prints its traceback (``bullworker --traceback``).
_show = {"traceback": False}


def _print_version(value: bool) -> None:
    if value:
        from bullworker.core.version import __version__
        from bullworker.transport.bullmq_compat import installed_version

        typer.echo(f"bullworker {__version__} (bullmq {installed_version()})")
        raise typer.Exit()


@cli.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the versions of bullworker and bullmq, and exit.",
        ),
    ] = False,
    show_traceback: Annotated[
        bool,
        typer.Option(
            "--traceback",
            envvar="BULLWORKER_TRACEBACK",
            help="On an error, print its full traceback before the error line.",
        ),
    ] = False,
) -> None:
    _show["traceback"] = show_traceback


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one ``error:`` line on stderr and exit with ``code`` (a usage error: 2)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load(spec: str | None) -> Any:
    """The app named by ``--app`` (AppLoadError: exit code 2)."""
    from bullworker.ops.serve import load_app

    return load_app(spec)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run the library call (its BullworkerError ends the command in `run_cli`)."""
    return asyncio.run(work)


def _click_error(name: str) -> Any:
    """click's ``UsageError`` or ``ClickException``, wherever this Typer takes click from."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name)


_UsageError = _click_error("UsageError")
_ClickException = _click_error("ClickException")


def run_cli(args: Sequence[str] | None = None) -> int:
    """Run the ``bullworker`` command; returns its exit status (docs/errors.md)."""
    command = typer.main.get_command(cli)
    try:
        result = command.main(args=args, standalone_mode=False)
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # ``bullworker`` alone: the help
            exc.show()
            return int(exc.exit_code)
        typer.echo(f"error: {exc.format_message()}", err=True)
        ctx = exc.ctx
        if ctx is not None and ctx.command.get_help_option(ctx) is not None:
            typer.echo(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.", err=True)
        return EXIT_USAGE
    except _ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        return EXIT_FAILED
    except BullworkerError as exc:
        if _show["traceback"]:
            traceback.print_exception(exc)
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    return result if isinstance(result, int) else EXIT_OK


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
