"""Beyond one machine (issue 16, goal 5): a fleet of small sessions compacted on one node and as Ray tasks, and a
fleet question asked over all of them with DuckDB here and with Ray.

    python -m benchmarks.fleet --sessions 1000 [--tasks 20] [--workdir DIR]

Every run is the `rayhistory` command a user types, timed from start to exit. The baseline is what one history
server does: one compaction at a time (`--parallel 1`, its default --max-concurrent-compactions). The Ray cluster
is a local `ray start --head --num-cpus 2` (two workers), started before the clock: a user's cluster is already
up. Prints a markdown table; exits 1 when a run fails, a session is left uncompacted, Ray's tables differ from
those compacted here, the answers differ or are wrong, or the Ray fan-out is slower than the baseline (FAIL).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from archive.compacted import COMPACTION_VERSION, INFO_FILE
from archive.storage import open_store
from benchmarks.fleet_sessions import write_fleet
from benchmarks.outcome import exit_status
from rayhistory.local_ray import LocalRayCluster

ROOT = Path(__file__).resolve().parents[1]
QUESTION = (
    "SELECT DISTINCT namespace, cluster, session_id, job_id FROM tasks "
    "WHERE error_type = 'OUT_OF_MEMORY' ORDER BY namespace, cluster, session_id, job_id"
)


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    environ = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", *args], env=environ, capture_output=True, text=True, cwd=ROOT
    )
    return time.monotonic() - started, done


def _compacted(archive: Path, refs: list) -> int:
    return sum((archive / r.compacted_prefix(COMPACTION_VERSION) / INFO_FILE).is_file() for r in refs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--tasks", type=int, default=20, help="tasks per session")
    p.add_argument("--workdir", help="where the archives go (default: a temporary directory, removed)")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rh-fleet-"))
    problems: list[str] = []
    rows: list[tuple[str, float, str]] = []
    try:
        started = time.monotonic()
        base = work / "fresh"
        fleet = write_fleet(open_store(str(base)), args.sessions, tasks=args.tasks)
        refs = [s.ref for s in fleet]
        print(f"wrote {len(fleet)} sessions in {time.monotonic() - started:.1f}s", file=sys.stderr)
        archives = {name: work / name for name in ("serial", "parallel", "ray")}
        for a in archives.values():
            shutil.copytree(base, a)
        ray = LocalRayCluster(num_cpus=2)
        try:
            ray.start()
            ray.wait_ready()
            runs = [
                ("one node, one at a time (baseline: one server)", "serial", ["--parallel", "1"], None),
                ("one node, --parallel 2", "parallel", ["--parallel", "2"], None),
                ("--ray-address, 2 workers", "ray", ["--ray-address", ray.address, "--parallel", "4"], ray.env),
            ]
            times: dict[str, float] = {}
            for label, name, extra, env in runs:
                print(f"compact: {label} ...", file=sys.stderr)
                seconds, done = _run(["compact", "--archive", str(archives[name]), *extra], env)
                times[name] = seconds
                if done.returncode != 0:
                    problems.append(f"compact ({label}) exited {done.returncode}: {done.stderr[-2000:]}")
                got = _compacted(archives[name], refs)
                if got != len(refs):
                    problems.append(f"compact ({label}) left {len(refs) - got} sessions uncompacted")
                rows.append((f"compact {len(refs):,} sessions: {label}", seconds, f"{len(refs) / seconds:,.1f}/s"))
            for r in refs[:: max(1, len(refs) // 25)]:  # a sample of 25 sessions: every table, row for row
                for t in (archives["ray"] / r.compacted_prefix(COMPACTION_VERSION)).glob("*.parquet"):
                    here = archives["serial"] / r.compacted_prefix(COMPACTION_VERSION) / t.name
                    if not pq.read_table(t).equals(pq.read_table(here)):
                        problems.append(f"{r.id}: {t.name} compacted on Ray differs from the one compacted here")
            if times["ray"] > times["serial"]:
                problems.append(
                    f"FAIL: --ray-address took {times['ray']:.1f}s, slower than one compaction at a time "
                    f"({times['serial']:.1f}s)"
                )
            expected = sorted([s.ref.namespace, s.ref.cluster, s.ref.id, s.failed_job] for s in fleet if s.oom)
            answers = {}
            for label, extra, env in (
                ("DuckDB on this machine (baseline)", [], None),
                (
                    "--ray-address, 2 workers, 100 sessions per task",
                    ["--ray-address", ray.address, "--sessions-per-task", "100"],
                    ray.env,
                ),
            ):
                print(f"sql: {label} ...", file=sys.stderr)
                seconds, done = _run(
                    ["sql", QUESTION, "--archive", str(archives["ray"]), "--format", "json", *extra], env
                )
                if done.returncode != 0:
                    problems.append(f"sql ({label}) exited {done.returncode}: {done.stderr[-2000:]}")
                    continue
                answers[label] = [list(r.values()) for r in json.loads(done.stdout)]
                if answers[label] != expected:
                    problems.append(f"sql ({label}) answered {len(answers[label])} rows, expected {len(expected)}")
                rows.append(
                    (f"OOM question over {len(refs):,} sessions: {label}", seconds, f"{len(answers[label])} jobs")
                )
        finally:
            ray.stop()
            ray.kill()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n`python -m benchmarks.fleet --sessions {args.sessions} --tasks {args.tasks}` ({os.cpu_count()} cores)\n")
    print("| run | seconds | result |")
    print("|---|---:|---|")
    for label, seconds, result in rows:
        print(f"| {label} | {seconds:.1f} | {result} |")
    return exit_status(problems, "benchmarks.fleet")


if __name__ == "__main__":
    sys.exit(main())
