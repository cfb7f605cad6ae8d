"""``bullworker contracts``: export the jobs' types for Node, check them, import Node's.

The commands parse arguments, call `bullworker.contracts` and print (docs/contracts.md).
Importing this module registers them on the ``bullworker`` command.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bullworker.cli.app import AppOption, JsonOption, cli, echo_json, fail, load
from bullworker.core.errors import EXIT_FAILED

contracts_cli = typer.Typer(
    help="Typed job contracts shared with Node: export the jobs' types, check, import.",
    no_args_is_help=True,
)
cli.add_typer(contracts_cli, name="contracts")


class Format(StrEnum):
    typescript = "typescript"
    jsonschema = "jsonschema"


OutDir = Annotated[
    Path, typer.Option("--out", help="The directory to write into (made if missing).")
]


@contracts_cli.command("export")
def contracts_export(
    out: OutDir,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help="typescript: jobs.ts, with the types, the Jobs map, addJob and the contract; "
            "jsonschema: a JSON Schema per job's data and result, and index.json.",
        ),
    ] = Format.typescript,
    app: AppOption = None,
) -> None:
    """Write the contract of the app's jobs: the types of their data and result, their queues.

    The same classes always give the same files (stable order, no timestamps): commit them, and `bullworker contracts check` tells what a later change breaks.
    """
    from bullworker.contracts import build_contract, write_export

    loaded = load(app)
    contract = build_contract(loaded.registry, loaded.config.bull_queue)
    written = write_export(contract, out, fmt.value)
    jobs = f"{len(contract.jobs)} job{'' if len(contract.jobs) == 1 else 's'}"
    if fmt is Format.typescript:
        typer.echo(f"wrote {written[0]} ({jobs})")
    else:
        typer.echo(f"wrote {written[0]} and {len(written) - 1} schema files ({jobs})")


@contracts_cli.command("check")
def contracts_check(
    against: Annotated[
        Path,
        typer.Option(
            "--against",
            help="The committed export: its directory (index.json, else jobs.ts) or that file.",
        ),
    ],
    current: Annotated[
        Path | None,
        typer.Option(
            "--current",
            help="Compare with this export instead of the app's classes "
            "(a service without the Python code checks a newer export).",
        ),
    ] = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare the app's jobs with a committed export; exit 1 on a breaking change.

    Breaking: a job removed or renamed, its queue changed; in the data, a field removed or made required, a new required field, a narrower type; in the result, a field removed or made optional, a wider type. Other changes are listed as compatible.
    """
    from bullworker.contracts import build_contract, compare, read_contract

    committed = read_contract(against)
    if current is not None:
        now = read_contract(current)
    else:
        loaded = load(app)
        now = build_contract(loaded.registry, loaded.config.bull_queue)
    changes = compare(committed, now)
    breaking = sum(change.breaking for change in changes)
    if as_json:
        echo_json(
            {
                "against": str(against),
                "breaking": breaking,
                "changes": [change.to_dict() for change in changes],
            }
        )
    else:
        for change in changes:
            typer.echo(f"{'breaking' if change.breaking else 'compatible':<10}  {change}")
        if not breaking:
            noun = "change" if len(changes) == 1 else "changes"
            summary = f"{len(changes)} compatible {noun}" if changes else "no changes"
            typer.echo(f"{summary} against {against}")
    if breaking:
        noun = "change" if breaking == 1 else "changes"
        fail(f"{breaking} breaking {noun} against {against}", EXIT_FAILED)


@contracts_cli.command("import")
def contracts_import(
    schema: Annotated[
        Path,
        typer.Argument(
            metavar="SCHEMA",
            help="A JSON file: one JSON Schema, a map of job name to {data, result, queue} "
            "schemas, or an export's index.json.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="The Python module to write.")],
    job: Annotated[
        str | None,
        typer.Option("--job", help="With one schema: the job whose data it is."),
    ] = None,
) -> None:
    """Write typed Python from JSON Schemas, such as a Node service's jobs.

    Each job gets TypedDicts of its data and result and queue_<job>(workers, data), typed for mypy, which queues it with WorkerService.queue_job_by_name.
    """
    from bullworker.contracts import read_schemas, render_python

    source = read_schemas(schema, job)
    text = render_python(source, schema.as_posix())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    jobs = len(source.jobs)
    typer.echo(f"wrote {out} ({jobs} job{'' if jobs == 1 else 's'})")
