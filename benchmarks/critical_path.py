"""The critical path of each job of the 1M-task session (benchmarks/timeline.py's), cold, against a 1 s target.

    .venv/bin/python -m benchmarks.critical_path --tasks 1000000 --work /tmp/rayhistory-bench-timeline
    .venv/bin/python -m benchmarks.critical_path --tasks 20000 --work /tmp/cp-bench-small   # a quick run

The session is benchmarks/synthetic_session.py's (written into --work unless it is there), compacted here first (not
timed). Then, for each job with tasks, a fresh process opens the session's tables and asks
historyserver/queries/critical_path.py for the job's path (what GET .../timeline/critical_path runs, without HTTP):
its time, its steps and the process's peak RSS. Baseline in the same run, in the same kind of process: one DuckDB
pass over the same columns of the job's attempts (count and last end), the least any answer must read.
Target: each job's path <= 1 s. Markdown table on stdout, progress on stderr, exit 1 on a missed target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from archive.storage import open_store
from benchmarks import synthetic_session
from benchmarks.outcome import exit_status

PATH_S = 1.0

CHILD = """
import json, sys, time
from pathlib import Path
from historyserver.queries.session_db import SessionDB
from historyserver.queries import critical_path as cp
tables, job, mode = sys.argv[1], sys.argv[2], sys.argv[3]
db = SessionDB(Path(tables))
t0 = time.monotonic()
if mode == "path":
    answer = cp.critical_path(db, job)
    out = {"steps": len(answer["steps"]), "attempts": answer["attempts"], "truncated": answer["truncated"],
           "via": [s["via"] for s in answer["steps"]], "span_ms": (answer["end"] or 0) - (answer["start"] or 0)}
else:
    n, end = db.query(
        "SELECT count(*), max(to_ms + from_ms + coalesce(pending_node_time_ms, 0) + coalesce(start_time_ms, 0) "
        "+ hash(task_id) % 2 + hash(parent_task_id) % 2) FROM task_timeline WHERE lower(job_id) = lower(?)", [job])[0]
    out = {"attempts": n}
out["seconds"] = time.monotonic() - t0
# VmHWM, not ru_maxrss: the latter keeps the parent's high-water mark across fork and exec.
hwm = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
out["rss_mib"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child(tables: Path, job: str, mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tables), job, mode], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def compacted(archive: str, session_id: str, cache: Path) -> Path:
    """The session's compacted tables (built here on the first run, as the server builds them on first open)."""
    from archive.compacted import TABLES
    from historyserver.catalog import Catalog
    from historyserver.warehouse import Warehouse

    store = open_store(archive)
    warehouse = Warehouse(store, cache)
    db = warehouse.db(Catalog(store, ttl=0).get(session_id), needs=TABLES)  # the timeline's table too
    warehouse.wait_for_write_backs()
    tables = Path(db.dir)
    db.close()
    return tables


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.critical_path", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--work", default="/tmp/rayhistory-bench-timeline", help="folder for the archive and the cache")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    info = synthetic_session.generate(str(work / "archive"), args.tasks, log=say)
    say("compacting (not timed) ...")
    t0 = time.monotonic()
    tables = compacted(str(work / "archive"), info["session_id"], work / "cache")
    say(f"tables ready in {time.monotonic() - t0:.1f}s")

    from historyserver.queries.session_db import SessionDB

    db = SessionDB(tables)
    jobs = [r[0] for r in db.query("SELECT job_id, count(*) FROM task_timeline GROUP BY 1 ORDER BY 2 DESC") if r[0]]
    db.close()
    problems: list[str] = []
    rows = []
    for job in jobs:
        say(f"job {job} ...")
        path = child(tables, job, "path")
        base = child(tables, job, "scan")
        ok = path["seconds"] <= PATH_S
        rows.append((job, path, base, ok))
        if not ok:
            problems.append(f"job {job}: critical path took {path['seconds'] * 1000:.0f} ms (target <= {PATH_S} s)")
        if path["attempts"] != base["attempts"]:
            problems.append(
                f"job {job}: the path read {path['attempts']} attempts, the scan counted {base['attempts']}"
            )
    print(
        f"`.venv/bin/python -m benchmarks.critical_path --tasks {args.tasks}` ({info['tasks']:,} task attempts, "
        f"{len(jobs)} jobs with tasks)\n"
    )
    print(
        "| job | attempts | critical path (cold) | target | pass/fail | steps (via) | peak RSS | baseline: one scan |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for job, path, base, ok in rows:
        vias = ", ".join(f"{v} {path['via'].count(v)}" for v in sorted(set(path["via"])))
        print(
            f"| {job} | {path['attempts']:,} | {path['seconds'] * 1000:.0f} ms | <= {PATH_S * 1000:.0f} ms | "
            f"{'PASS' if ok else 'FAIL'} | {path['steps']} ({vias}{', cut' if path['truncated'] else ''}) | "
            f"{path['rss_mib']:.0f} MiB | {base['seconds'] * 1000:.0f} ms, {base['rss_mib']:.0f} MiB |"
        )
    return exit_status(problems, "benchmarks.critical_path")


if __name__ == "__main__":
    sys.exit(main())
