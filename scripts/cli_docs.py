"""docs/cli.md, rendered from the ``bullworker`` command itself so it cannot drift.

    scripts/cli-docs            write docs/cli.md
    scripts/cli-docs --check    exit 1 if docs/cli.md differs from what the CLI says

Every command's ``--help`` (usage, arguments, options, defaults, environment
variables) is rendered with click's own help formatter, rich disabled, at a
fixed width, so the text is the same on every machine. tests/test_docs.py
fails when docs/cli.md is not what `render` returns.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "cli.md"
#: Columns of the rendered help (the terminal's width would make the file machine-dependent).
WIDTH = 100

INTRO = """\
# CLI reference

<!-- Written by scripts/cli-docs from the bullworker command itself: do not edit by hand.
     tests/test_docs.py fails when this file and the command disagree. -->

Each section is the text that `--help` prints for that command (a terminal shows it in boxes).
Commands that load your app take `--app module[:attribute]` (attribute default `app`; a callable
is called), or read it from `BULLWORKER_APP`. An error is one line on stderr starting with
`error:` and a non-zero exit status (see [errors.md](errors.md)).

What the commands do, with examples: [operations.md](operations.md) (`stats`, `jobs`, `retry`,
`prune`, `doctor`, `schedules`, `queues`), [deployment.md](deployment.md) (`start`) and the
[README](../README.md) (`start`, `queue`, `jobs`).

Shell completion: `bullworker --install-completion` installs it for your shell (bash, zsh, fish
or PowerShell); `bullworker --show-completion` prints the script to install by hand. Tab then
completes commands and options, job names (`bullworker queue <TAB>`, `--name`) and queue names
(`--queue`, and each name of `--queues a,b`). Names come from the app given by `--app` earlier on
the line, or by `BULLWORKER_APP`; if the app cannot be imported, only commands and options are
completed.
"""


def _commands(command: Any, parent: Any, name: str) -> list[tuple[str, str]]:
    """``(command path, help text)`` of ``command`` and of every subcommand, depth first."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None  # click's plain formatter, not rich's panels
    ctx = command.context_class(
        command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )
    found = [(ctx.command_path, command.get_help(ctx))]
    if hasattr(command, "list_commands"):
        for sub in command.list_commands(ctx):
            found += _commands(command.get_command(ctx, sub), ctx, sub)
    return found


def render() -> str:
    """The whole of docs/cli.md."""
    import typer

    from bullworker.cli import cli

    parts = [INTRO]
    for path, text in _commands(typer.main.get_command(cli), None, "bullworker"):
        parts.append(f"## `{path}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if TARGET.read_text() == text:
            return 0
        print("docs/cli.md is out of date: run scripts/cli-docs", file=sys.stderr)
        return 1
    if argv:
        print("usage: scripts/cli-docs [--check]", file=sys.stderr)
        return 2
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
