"""Run the benchmark suite: ``.venv/bin/python -m bench [--smoke] [--out DIR] [--only ...]``.

A full run writes docs/benchmarks.json and docs/benchmarks.md; ``--smoke``
runs every section with small sizes (well under a minute, no targets judged
as meaningful) and writes to bench/results/ unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    dashboard_bench,
    enqueue,
    history_bench,
    pickup,
    profile,
    recorder_bench,
    report,
    scaling,
    startup,
    throughput,
)
from bench.common import ROOT, Plan
from bench.meta import describe, judge, load_average


async def _startup(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    return await asyncio.to_thread(startup.run, plan, log)


SECTIONS: dict[str, Callable[[Plan, Callable[[str], None]], Awaitable[dict[str, Any]]]] = {
    "startup": _startup,
    "enqueue": enqueue.run,
    "throughput": throughput.run,
    "scaling": scaling.run_scaling,
    "recorder": recorder_bench.run,
    "memory": scaling.run_memory,
    "profile": profile.run,
    "dashboard": dashboard_bench.run,
    "history": history_bench.run,
    "pickup": pickup.run,
}


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def render_only(out: Path) -> int:
    """Write benchmarks.md again from benchmarks.json (after editing bench/analysis.md)."""
    data = json.loads((out / "benchmarks.json").read_text())
    (out / "benchmarks.md").write_text(report.render(data))
    log(f"wrote {out / 'benchmarks.md'} from {out / 'benchmarks.json'}")
    return 0


async def main(args: argparse.Namespace) -> int:
    if args.render:
        return render_only(Path(args.out) if args.out else ROOT / "docs")
    plan = Plan.quick() if args.smoke else Plan.full()
    if args.repeats:
        plan.repeats = args.repeats
    wanted = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        log(f"unknown section(s): {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
        return 2
    began = time.perf_counter()
    data: dict[str, Any] = {
        "command": "python -m bench" + (" --smoke" if args.smoke else ""),
        "smoke": plan.smoke,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "plan": {k: v for k, v in vars(plan).items() if k != "notes"},
        "load_average_start": load_average(),
        "meta": await describe(),
        "sections": {},
        "errors": {},
    }
    for name in wanted:
        log(f"{name}:")
        section_began = time.perf_counter()
        try:
            data["sections"][name] = await SECTIONS[name](plan, log)
        except Exception as exc:
            data["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(f"  FAILED: {data['errors'][name]}")
            traceback.print_exc()
        log(f"  ({time.perf_counter() - section_began:.0f} s)")
    data["load_average_end"] = load_average()
    data["elapsed_s"] = round(time.perf_counter() - began, 1)
    data["targets"] = judge(data["sections"])
    out = Path(args.out) if args.out else ROOT / ("bench/results" if plan.smoke else "docs")
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "benchmarks.md").write_text(report.render(data))
    for target in data["targets"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        log(
            f"item {target['item']}: {target['what']}: {target['value']} ({target['target']}) {state}"
        )
    log(f"wrote {out / 'benchmarks.json'} and {out / 'benchmarks.md'} in {data['elapsed_s']:.0f} s")
    return 1 if data["errors"] else 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="small sizes: check that it all runs")
    parser.add_argument("--out", help="directory for benchmarks.json/.md (default docs/)")
    parser.add_argument("--only", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, help="repeats of each measurement (default 3)")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite benchmarks.md from benchmarks.json"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
