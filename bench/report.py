"""docs/benchmarks.md from a run's JSON: the machine, the figures table, the details.

The prose of "What the time goes to" lives in bench/analysis.md and is
appended as it is, after the profile tables of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import history_bench

ANALYSIS = Path(__file__).with_name("analysis.md")
#: The throughput section's peers (bench/peer_runs.py), as the tables name them.
PEER_NAMES = {"taskiq": "taskiq (Redis stream broker)", "dramatiq": "Dramatiq (threads)"}


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _mark(met: Any) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def machine(meta: dict[str, Any]) -> list[str]:
    rows = [
        ("CPU", f"{meta['cpu']}, {meta['cores']} cores, {meta['memory_gib']} GiB"),
        ("OS", meta["os"]),
        ("Python", f"{meta['python']} (default asyncio loop)"),
        ("bullworker", f"{meta['bullworker']} at {meta['bullworker_commit']}"),
        ("bullmq (Python)", meta["bullmq"]),
        ("redis-py / hiredis", f"{meta['redis_py']} / {meta['hiredis']}"),
        ("psycopg", meta["psycopg"]),
        ("opentelemetry-api", meta["opentelemetry_api"]),
        ("Redis server", meta["redis_server"]),
        ("PostgreSQL server", meta["postgresql_server"]),
        ("Node / bullmq (Node)", f"{meta['node']} / {meta['node_bullmq']}"),
    ]
    out = ["| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return out


def figures(data: dict[str, Any]) -> list[str]:
    s = data["sections"]
    out = [
        "| # | measurement | bullworker | reference | ratio | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    targets = {t["what"]: t for t in data["targets"]}

    def verdict(what: str) -> str:
        t = targets.get(what)
        return f"{t['target']}: {_mark(t['met'])}" if t else "(reported)"

    tp = _get(s, "throughput", "workloads") or {}
    for workload, label in (("noop", "no-op"), ("sleep", "1 ms I/O")):
        w = tp.get(workload)
        if not w:
            continue
        raw = _n(_get(w, "raw", "jobs_per_s")) + " raw"
        out.append(
            f"| 1 | {label} jobs/s, 1 process, recording off | {_n(_get(w, 'bullworker', 'jobs_per_s'))}"
            f" | {raw} | {_ratio(_get(w, 'ratios', 'bullworker/raw', 'ratio'))}"
            f" | {verdict(f'bullworker / raw bullmq, {label} jobs (recording off)')} |"
        )
        out.append(
            f"| 1 | {label} jobs/s, 1 process, recording on (PostgreSQL) |"
            f" {_n(_get(w, 'bullworker+rec', 'jobs_per_s'))} | {raw}"
            f" | {_ratio(_get(w, 'ratios', 'bullworker+rec/raw', 'ratio'))} | (reported) |"
        )
        if "bullworker/asyncio" in w:
            out.append(
                f"| 1 | {label} jobs/s, uvloop vs asyncio's loop | {_n(_get(w, 'bullworker', 'jobs_per_s'))}"
                f" | {_n(_get(w, 'bullworker/asyncio', 'jobs_per_s'))} asyncio"
                f" | {_ratio(_get(w, 'ratios', 'uvloop/asyncio', 'ratio'))} | (reported) |"
            )
        if "node" in w:
            out.append(
                f"| 2 | {label} jobs/s vs Node BullMQ, 1 process each"
                f" | {_n(_get(w, 'bullworker', 'jobs_per_s'))} | {_n(_get(w, 'node', 'jobs_per_s'))} Node"
                f" | {_ratio(_get(w, 'ratios', 'bullworker/node', 'ratio'))} | (reference ceiling) |"
            )
        out += _peer_rows(w, label)
    out += _pickup_rows(s.get("pickup") or {})
    sc = _get(s, "scaling", "workloads") or {}
    for workload, label in (("noop", "no-op"), ("sleep", "1 ms I/O")):
        w = sc.get(workload)
        if w:
            out.append(
                f"| 3 | {label} jobs/s, `--processes 2` vs `1` | {_n(_get(w, 'processes_2', 'jobs_per_s'))}"
                f" | {_n(_get(w, 'processes_1', 'jobs_per_s'))} | {_ratio(w.get('speedup'))}"
                f" | {verdict(f'--processes 2 / --processes 1, {label} jobs')} |"
            )
    e2e = _get(s, "recorder", "end_to_end")
    if e2e:
        out.append(
            f"| 4 | largest finished set (ZCARD) while 2 processes ran {_n(e2e['jobs'])} jobs"
            f" at {_n(e2e['jobs_per_s'])}/s | {_n(e2e['finished_set_max'])} | | | bounded |"
        )
        out.append(
            f"| 4 | lag `recordedAt - completedAt`, p50 / p99 / max (s) | {e2e['lag_p50_s']} /"
            f" {e2e['lag_p99_s']} / {e2e['lag_max_s']} | | |"
            f" {verdict('recording lag p99 (s), 2 processes flat out')} |"
        )
    alone = _get(s, "recorder", "recorder_alone")
    if alone:
        out.append(
            f"| 4 | recorder alone: {_n(alone['backlog'])} finished jobs to `_jobs`, rows/s"
            f" | {_n(alone['rows_per_s'])} | | | {verdict('recorder alone, rows/s')} |"
        )
    enq = s.get("enqueue") or {}
    for ours, raw in (("queue_job", "Queue.add"), ("queue_jobs", "addBulk")):
        if ours in enq:
            out.append(
                f"| 5 | `{ours}` vs `{raw}`, jobs/s | {_n(enq[ours]['jobs_per_s'])}"
                f" | {_n(enq[raw]['jobs_per_s'])} | {_ratio(_get(enq, f'{ours}/{raw}', 'ratio'))}"
                f" | {verdict(f'{ours} / {raw}')} |"
            )
    mem = s.get("memory")
    if mem and "points" in mem:
        pts = mem["points"]
        out.append(
            f"| 6 | RSS of `bullworker start` (recording on, {mem['recording']}): idle /"
            f" {_n(mem['first'])} / {_n(mem['total'])} jobs (MiB)"
            f" | {' / '.join(_n(p['rss_kib'] / 1024, 1) for p in pts)} | | |"
            f" growth {mem['growth_first_to_last_mb']} MB:"
            f" {_mark(targets['RSS growth from 10k to 100k jobs (MB)']['met'])} (< 10 MB) |"
        )
    dash = s.get("dashboard")
    if dash and "pages" in dash:
        for page, v in dash["pages"].items():
            kind = "filtered" if v["filtered"] else "unfiltered"
            what = f"dashboard job list at 1M rows, p95 of the {kind} pages (ms)"
            out.append(
                f"| 15 | dashboard `/jobs`, {_n(dash['rows'])} rows: {page}, p50 / p95 (ms)"
                f" | {v['p50_ms']} / {v['p95_ms']} | | | {verdict(what)} |"
            )
    st = s.get("startup")
    if st:
        for label in ("bullworker --help", "python -c 'import bullworker'"):
            out.append(
                f"| 7 | `{label}` wall time, median of {st['repeats']} (ms) | {_n(st[label]['median_ms'])}"
                f" | {_n(st['python -c pass']['median_ms'])} bare python | | (reported) |"
            )
    return out


def _against(ratio: Any, target: float) -> str:
    if ratio is None:
        return f">= {target:g}: not measured"
    return f">= {target:g}: {_mark(ratio >= target)}"


def _peer_rows(w: dict[str, Any], label: str) -> list[str]:
    """Item 1's targets: bullworker recording to PostgreSQL vs the fastest peer and Node."""
    rec = _n(_get(w, "bullworker+rec", "jobs_per_s"))
    out = []
    peer = _get(w, "ratios", "bullworker+rec/fastest peer")
    if peer:
        ratio = peer["ratio"]
        out.append(
            f"| 1 | {label} jobs/s, recording on vs the fastest pure-Python peer | {rec}"
            f" | {_n(_get(w, peer['peer'], 'jobs_per_s'))} {PEER_NAMES[peer['peer']]}"
            f" | {_ratio(ratio)} | {_against(ratio, 1.5)} |"
        )
    if "node" in w:
        ratio = _get(w, "ratios", "bullworker+rec/node", "ratio")
        out.append(
            f"| 1 | {label} jobs/s, recording on vs Node BullMQ | {rec}"
            f" | {_n(_get(w, 'node', 'jobs_per_s'))} Node | {_ratio(ratio)} | {_against(ratio, 0.5)} |"
        )
    return out


def _pickup_rows(pk: dict[str, Any]) -> list[str]:
    """Item 16.2: queued-to-handler latency, idle and first job after ready (targets 10/100 ms)."""
    out = []
    for kind, what in (("idle", "into an idle runner"), ("first_job", "first job after ready")):
        ours = _get(pk, kind, "bullworker")
        if not ours:
            continue
        refs = [
            f"{_get(pk, kind, k, 'median_ms')} / {_get(pk, kind, k, 'p99_ms')} {name}"
            for k, name in (("raw bullmq", "raw"), ("node", "Node"))
            if _get(pk, kind, k)
        ]
        ways = [("bullworker", "log line")]
        if kind == "first_job":
            ways.append(("bullworker (/readyz)", "`/readyz`"))
        for key, how in ways:
            v = _get(pk, kind, key)
            if not v:
                continue
            met = v["median_ms"] <= 10 and v["p99_ms"] <= 100
            ready = f" (ready: {how})" if kind == "first_job" else ""
            out.append(
                f"| 16 | pickup {what}{ready}, median / p99 (ms) | {v['median_ms']} / {v['p99_ms']}"
                f" | {'; '.join(refs)} | | <= 10 / <= 100: {_mark(met)} |"
            )
    return out


def profile(data: dict[str, Any]) -> list[str]:
    prof = data["sections"].get("profile")
    if not prof:
        return ["(the profile section did not run)"]
    labels = [k for k in ("raw", "bullworker", "bullworker+rec") if isinstance(prof.get(k), dict)]
    if any("skipped" in prof[k] for k in labels) or not labels:
        reasons = "; ".join(prof[k].get("skipped", "") for k in labels)
        return [f"(profile skipped: {reasons})"]
    buckets: list[str] = []
    for k in labels:
        buckets += [b for b in prof[k]["buckets"] if b not in buckets]
    names = {
        "raw": "raw bullmq",
        "bullworker": "bullworker",
        "bullworker+rec": "bullworker + recorder",
    }
    out = [
        f"Share of CPU samples (py-spy, 200 Hz, {prof['jobs']:,} no-op jobs, concurrency 10):",
        "",
        "| where | " + " | ".join(names[k] for k in labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for b in buckets:
        out.append(
            f"| {b} | " + " | ".join(f"{prof[k]['buckets'].get(b, 0):.0%}" for k in labels) + " |"
        )
    out.append(
        "| jobs/s under the profiler | "
        + " | ".join(_n(prof[k]["jobs_per_s_under_profiler"]) for k in labels)
        + " |"
    )
    return out


def cpu_table(data: dict[str, Any]) -> list[str]:
    """CPU per job of each worker variant (throughput section), Redis' included."""
    tp = _get(data["sections"], "throughput", "workloads") or {}
    if not tp:
        return []
    out = [
        "CPU per job while draining (medians; Redis is shared, so its figure is approximate):",
        "",
        "| workload | worker | jobs/s | worker CPU ms/job | Redis CPU ms/job |",
        "|---|---|---:|---:|---:|",
    ]
    names = {
        "raw": "raw bullmq",
        "bullworker": "bullworker, recording off",
        "bullworker+rec": "bullworker, recording to PostgreSQL",
        "bullworker/asyncio": "bullworker on asyncio's loop",
        "node": "Node BullMQ",
        **PEER_NAMES,
    }
    for workload, w in tp.items():
        for key, name in names.items():
            if key in w:
                v = w[key]
                out.append(
                    f"| {workload} | {name} | {_n(v['jobs_per_s'])} | {v['worker_cpu_ms_per_job']:.3f}"
                    f" | {v['redis_cpu_ms_per_job']:.3f} |"
                )
    return out


def render(data: dict[str, Any]) -> str:
    meta = data["meta"]
    lines = [
        "# Benchmarks",
        "",
        f"A {'smoke' if data['smoke'] else 'full'} run of `{data['command']}` on {data['date']},"
        f" {data['elapsed_s']:.0f} s. The machine is shared and noisy (load average"
        f" {', '.join(map(str, data['load_average_start']))} at the start,"
        f" {', '.join(map(str, data['load_average_end']))} at the end), so every figure is"
        f" the median of {data['plan']['repeats']} interleaved repeats and every ratio compares"
        " runs of the same invocation. Raw figures, every repeat and the CPU per job are in"
        " [benchmarks.json](benchmarks.json); the method is in bench/README.md.",
        "",
        "## Machine and versions",
        "",
        *machine(meta),
        "",
        "## Figures",
        "",
        *figures(data),
        "",
        *history_bench.render(data),
    ]
    if data.get("errors"):
        lines += ["Sections that failed:", ""]
        lines += [f"- {k}: {v}" for k, v in data["errors"].items()]
        lines.append("")
    lines += ["## What the time goes to", "", *profile(data), "", *cpu_table(data), ""]
    if ANALYSIS.exists():
        lines.append(ANALYSIS.read_text().strip())
        lines.append("")
    return "\n".join(lines)
