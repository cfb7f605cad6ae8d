"""The soak's verdict: ids produced vs rows in ``_jobs``, runs counted twice, and its report.

Everything here works on plain data read after the run (the producers' ids, the
rows of ``_jobs``, the workers' run logs, the faults with their times), so it is
the same for the full soak and for the test's tiny one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: A run that began this long before a Redis crash, or while Redis was down, may have finished
#: without its finish reaching Redis: its job comes back through the stalled path.
REDIS_MARGIN_S = 2.0


@dataclass
class Fault:
    """One fault injected during the run."""

    kind: str  # "redis-restart", "sigkill-leader", "pg-restart"
    at_jobs: int  # jobs run when it began
    began: float  # unix seconds
    ended: float = 0.0  # when the server (or the killed child) was back
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.ended - self.began, 2)
        return data


def read_runs(runs_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every run of every job id, ``(pid, unix time)``, from the ``runs-<pid>.log`` files."""
    runs: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(runs_dir.glob("runs-*.log")):
        pid = int(path.stem.split("-", 1)[1])
        for line in path.read_text().splitlines():
            job_id, _, when = line.partition(" ")
            if job_id and when:  # a line torn by a kill has no time: the run still counts
                runs.setdefault(job_id, []).append((pid, float(when)))
            elif job_id:
                runs.setdefault(job_id, []).append((pid, 0.0))
    return runs


def explain_reruns(runs: dict[str, list[tuple[int, float]]], faults: list[Fault]) -> dict[str, Any]:
    """Jobs that ran more than once, each put down to the fault that made it unavoidable.

    A run is explained by the SIGKILL when the killed process ran it, and by the
    Redis crash when it began shortly before the crash or while Redis was down
    (its finish may never have reached Redis). Any other repeat is unexplained.
    """
    killed = {int(f.detail["pid"]) for f in faults if f.kind == "sigkill-leader"}
    outages = [(f.began - REDIS_MARGIN_S, f.ended) for f in faults if f.kind == "redis-restart"]
    by_cause: Counter[str] = Counter()
    unexplained: list[dict[str, Any]] = []
    twice = 0
    for job_id, seen in runs.items():
        if len(seen) < 2:
            continue
        twice += 1
        earlier = sorted(seen, key=lambda run: run[1])[:-1]
        if any(pid in killed for pid, _ in earlier):
            by_cause["sigkill-leader"] += 1
        elif any(lo <= when <= hi for _, when in earlier for lo, hi in outages):
            by_cause["redis-restart"] += 1
        else:
            by_cause["unexplained"] += 1
            if len(unexplained) < 50:
                unexplained.append({"id": job_id, "runs": seen})
    return {
        "jobs_run": len(runs),
        "runs": sum(len(seen) for seen in runs.values()),
        "jobs_run_more_than_once": twice,
        "by_cause": dict(by_cause),
        "unexplained": unexplained,
    }


def check_rows(
    produced: dict[str, tuple[str, int]],
    rows: Iterable[tuple[str, str, int, str]],
    sizes: dict[str, int],
) -> dict[str, Any]:
    """Compare the set of ids the producers were told about with the rows of ``_jobs``.

    ``produced``: job id -> (producer, sequence number); ``rows``: (job id, producer,
    sequence number, status); ``sizes``: how many jobs each producer had to add. An
    id in ``_jobs`` that no producer was told about comes from an add whose reply was
    lost (Redis crashed after writing it) and that the producer then made again.
    """
    count: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    payloads: dict[tuple[str, int], list[str]] = {}
    for job_id, producer, seq, status in rows:
        count[job_id] += 1
        statuses[status] += 1
        payloads.setdefault((producer, seq), []).append(job_id)
    missing = sorted(job_id for job_id in produced if job_id not in count)
    duplicates = sorted(job_id for job_id, n in count.items() if n > 1)
    extra = sorted(job_id for job_id in count if job_id not in produced)
    no_row = [
        (producer, seq)
        for producer, size in sizes.items()
        for seq in range(size)
        if (producer, seq) not in payloads
    ]
    return {
        "produced": len(produced),
        "rows": sum(count.values()),
        "distinct_ids": len(count),
        "statuses": dict(statuses),
        "missing": len(missing),
        "missing_ids": missing[:100],
        "duplicate_rows": len(duplicates),
        "duplicate_ids": duplicates[:100],
        "extra_ids": len(extra),
        "extra_ids_list": extra[:100],
        "payloads_without_row": len(no_row),
        "payloads_without_row_list": [f"{p}:{s}" for p, s in no_row[:100]],
        "payloads_added_twice": sum(1 for ids in payloads.values() if len(ids) > 1),
        "exactly_once": not missing and not duplicates,
    }


def _mib(value: float) -> str:
    return f"{value / 1048576:.1f} MiB"


def render(data: dict[str, Any]) -> list[str]:
    """The soak's results as a markdown fragment (no heading of its own level 2)."""
    ids, reruns, mem = data["ids"], data["reruns"], data["redis_memory"]
    lag = data["recording_lag"]
    lines = [
        f"{data['jobs']:,} jobs ({data['jobs_python']:,} queued from Python with `queue_jobs`,"
        f" {data['jobs_node']:,} from Node with `addBulk`, while they ran) through"
        f" `bullworker start --processes 2`, recording to PostgreSQL; {data['when']}.",
        "",
        "| fault | after jobs run | back after |",
        "|---|---:|---:|",
    ]
    for fault in data["faults"]:
        lines.append(f"| {fault['kind']} | {fault['at_jobs']:,} | {fault['seconds']:.1f} s |")
    causes = reruns["by_cause"]
    verdict = "yes" if ids["exactly_once"] else "**no**"
    lines += [
        "",
        "| result | value |",
        "|---|---:|",
        f"| wall time | {data['wall_s']:.0f} s ({data['jobs'] / data['wall_s']:,.0f} jobs/s) |",
        f"| every produced id in `_jobs` exactly once | {verdict} |",
        f"| ids produced / distinct ids in `_jobs` / rows | {ids['produced']:,} /"
        f" {ids['distinct_ids']:,} / {ids['rows']:,} |",
        f"| missing ids / duplicate rows | {ids['missing']} / {ids['duplicate_rows']} |",
        f"| jobs added twice by a producer retry (reply lost in the Redis crash) |"
        f" {ids['payloads_added_twice']} |",
        f"| rows by status | {', '.join(f'{k} {v:,}' for k, v in sorted(ids['statuses'].items()))} |",
        f"| jobs run more than once | {reruns['jobs_run_more_than_once']}"
        f" (SIGKILL {causes.get('sigkill-leader', 0)}, Redis crash {causes.get('redis-restart', 0)},"
        f" unexplained {causes.get('unexplained', 0)}) |",
        f"| recording lag (`recordedAt - completedAt`) p50 / p99 / max | {lag['p50_s']:.2f} /"
        f" {lag['p99_s']:.2f} / {lag['max_s']:.2f} s |",
        f"| largest backlog of finished jobs not yet recorded (sampled) |"
        f" {data['backlog_max']:,} |",
        f"| Redis `used_memory` start / end | {_mib(mem['start'])} / {_mib(mem['end'])}"
        f" ({mem['end'] - mem['start']:+,} bytes; {mem['kept_end']:,} recorded jobs kept by the"
        " keep window) |",
    ]
    for child in data["workers"]:
        growth = child["end_kib"] - child["warm_kib"]
        lines.append(
            f"| worker pid {child['pid']} (slot {child['slot']}"
            f"{', SIGKILLed' if child['killed'] else ''}) VmRSS idle / warm / end |"
            f" {child['start_kib'] / 1024:.1f} / {child['warm_kib'] / 1024:.1f} /"
            f" {child['end_kib'] / 1024:.1f} MiB ({growth / 1024:+.1f} MiB since warm) |"
        )
    return lines
