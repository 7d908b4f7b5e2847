"""Nothing to wait for (issue 16, goal 1): how long after a session's end marker its answers are complete, when the
server folded the session while it ran, against today's first open of the ended session, in the same run.

    .venv/bin/python -m benchmarks.incremental --tasks 100000
    .venv/bin/python -m benchmarks.incremental --tasks 1000000 --batches 40 --interval 3

A synthetic session (benchmarks/synthetic_session.py) is generated, then streamed into a second archive as its
collectors would ship it (benchmarks/stream_session.py: `--batches` pieces of every file, one every `--interval`
seconds, the end markers last) while a server process (the real app, its lifespan's folder on) runs. From the
moment ended.json is written, the server process asks the four answers a user opens first (a page of tasks, their
summary, one job's timeline, a log search) until all are complete: that wait is the result. The baseline is a fresh
server process opening the same ended session as today (compacted on first open), asked the same answers. Each
server is its own process, so its peak RSS is its own (the incremental one's includes all the folding).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.outcome import exit_status

WAIT_TARGET_S = 5.0
PAGE_REPEATS = 5
RSS_TARGET_MIB = 1024.0
JOB = "01000000"  # the synthetic session's first driver job (benchmarks/synthetic_plan.py JOBS)
SEARCH = "train_step"  # a task name its workers print (benchmarks/synthetic_render.py)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _routes(session_id: str) -> dict[str, str]:
    return {
        "tasks?limit=100": f"/sessions/{session_id}/api/v0/tasks?limit=100",
        "summarize": f"/sessions/{session_id}/api/v0/tasks/summarize",
        f"timeline of job {JOB}": f"/api/v1/sessions/{session_id}/timeline?job_id={JOB}",
        "log search": f"/api/v1/sessions/{session_id}/logs/search?q={SEARCH}&limit=100",
    }


def _signature(name: str, body: Any) -> Any:
    """What must match the baseline's answer (and show it is complete)."""
    if name.startswith("tasks"):
        return body["data"]["result"]["total"]
    if name == "summarize":
        summary = body["data"]["result"]["result"]["node_id_to_summary"]["cluster"]["summary"]
        return sum(sum(f["state_counts"].values()) for f in summary.values())
    return body["total"]  # the timeline's attempts, the search's matching lines


def child(archive: str, session_id: str, cache_dir: str, control: str, fold: bool, fold_interval: float) -> None:
    """A server process: with `fold`, it runs while the session is streamed and measures from the end marker's
    time (written to `control` by the streamer); without, it opens the ended session at once (the baseline)."""
    from fastapi.testclient import TestClient

    from archive.compacted import FILES, INFO_FILE, LOG_LINES, TASKS
    from archive.storage import open_store
    from benchmarks.replay_baseline import peak_rss_mib
    from historyserver.app import create_app
    from historyserver.settings import ServerSettings

    if os.environ.get("RAYHISTORY_BENCH_SERVER_LOG"):  # the server's own log (folds, builds), to see where time went
        logging.basicConfig(
            filename=os.environ["RAYHISTORY_BENCH_SERVER_LOG"] + (".fold" if fold else ".one-shot"),
            level=logging.INFO,
            format="%(asctime)s.%(msecs)03d %(threadName)s %(name)s %(message)s",
            datefmt="%H:%M:%S",
        )
        logging.getLogger("rayhistory").setLevel(logging.DEBUG)  # each fold's and merge's time
    settings = ServerSettings(
        archive=archive, cache_dir=cache_dir, catalog_ttl=1.0, fold_running=fold, fold_interval=fold_interval
    )
    routes = _routes(session_id)
    with TestClient(create_app(settings, open_store(archive))) as client:
        warehouse = client.app.state.services.warehouse  # type: ignore[attr-defined]
        ctl = Path(control)
        (ctl / "ready").write_text("1")
        while fold and not (ctl / "ended").exists():
            time.sleep(0.05)
        ended_at = float((ctl / "ended").read_text()) if fold else time.time()
        folds_before_end = warehouse.stats.folds
        while client.get(f"/api/v1/sessions/{session_id}").json().get("status") != "ended":
            time.sleep(0.05)  # the catalog has not seen the end yet
        answers: dict[str, Any] = {}
        answer_ms: dict[str, int] = {}  # each answer's successful request (the tables built)
        for name, url in routes.items():
            while True:
                asked = time.monotonic()
                r = client.get(url)
                if r.status_code == 200:
                    answers[name] = _signature(name, r.json())
                    answer_ms[name] = round((time.monotonic() - asked) * 1000)
                    break
                if r.status_code != 503:  # 503: another request (the compactor) is building the tables
                    raise SystemExit(f"GET {url} answered {r.status_code}: {r.text[:300]}")
                time.sleep(0.05)
        waited = time.time() - ended_at
        built = json.loads((warehouse.root / session_id / INFO_FILE).read_text())
        page_ms = []  # a page of tasks once complete: over the folds' parts, or the first open's tables
        for _ in range(PAGE_REPEATS):
            started = time.monotonic()
            client.get(routes["tasks?limit=100"]).raise_for_status()
            page_ms.append((time.monotonic() - started) * 1000)
    print(
        json.dumps(
            {
                "wait_s": round(waited, 2),
                "rss_mib": round(peak_rss_mib(), 1),
                "answers": answers,
                "folds": folds_before_end,
                "fold_seconds": round(warehouse.stats.fold_seconds, 1),
                "build_s": built["seconds"],  # of the wait: building the tables (the rest: seeing the end, answers)
                # from the end marker to the build's start (built_at_ms is stamped as the build ends)
                "build_began_s": round(built["built_at_ms"] / 1000 - built["seconds"] - ended_at, 2),
                "answer_ms": answer_ms,
                "last_fold_s": built.get("incremental", {}).get("fold_seconds"),
                # Built from its folds, or whole (the folds had fallen END_BACKLOG_BYTES behind, or failed).
                "from_folds": "incremental" in built,
                "phases": built.get("phases", {}),
                "task_files": len(built.get(FILES, {}).get(TASKS.name, [TASKS.file])),
                "log_files": len(built.get(FILES, {}).get(LOG_LINES.name, [LOG_LINES.file])),
                "page_ms": round(statistics.median(page_ms), 1),
            }
        )
    )


def _spawn(archive: Path, session_id: str, cache: Path, control: Path, fold: bool, fold_interval: float):
    cmd = [sys.executable, "-m", "benchmarks.incremental", "--child", "fold" if fold else "one-shot"]
    cmd += ["--archive", str(archive), "--session", session_id, "--cache-dir", str(cache), "--control", str(control)]
    cmd += ["--fold-interval", str(fold_interval)]
    control.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True)


def _result(proc) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        return {"error": f"exit code {proc.returncode}"}
    return json.loads(out.strip().splitlines()[-1])


def run(tasks: int, batches: int, interval: float, fold_interval: float, seed: int, root: Path) -> int:
    from archive.layout import SessionRef
    from archive.storage import open_store
    from benchmarks.stream_session import Streamer
    from benchmarks.synthetic_session import generate

    info = generate(str(root / "src"), tasks, seed=seed)
    ref = SessionRef.from_id(info["session_id"])
    src, live = open_store(str(root / "src")), open_store(str(root / "live"))

    stream = Streamer(src, live, ref, batches)
    stream.start()
    proc = _spawn(root / "live", ref.id, root / "cache-fold", root / "ctl-fold", True, fold_interval)
    while not (root / "ctl-fold" / "ready").exists():
        if proc.poll() is not None:
            return exit_status([f"the folding server exited with {proc.returncode}"], "incremental")
        time.sleep(0.1)
    started = time.monotonic()
    for i in range(batches):
        due = started + i * interval
        time.sleep(max(0.0, due - time.monotonic()))
        mb = stream.write_batch() / 1e6
        say(f"  batch {i + 1}/{batches}: {mb:,.1f} MB archived ({time.monotonic() - started:.0f}s)")
    stream.end()
    # ended.json was written just before. Renamed into place: the child polls for the file and reads it at once (it
    # once read it empty, between its creation and the write).
    ended = root / "ctl-fold" / "ended"
    ended.with_suffix(".tmp").write_text(repr(time.time()))
    ended.with_suffix(".tmp").rename(ended)
    streamed_s = time.monotonic() - started
    say(f"streamed in {streamed_s:.0f}s; the session ended; waiting for its answers")
    folded = _result(proc)
    say(f"folding server: {folded}")
    baseline = _result(_spawn(root / "src", ref.id, root / "cache-one-shot", root / "ctl-one", False, fold_interval))
    say(f"baseline: {baseline}")
    print(table(info, batches, streamed_s, folded, baseline))
    return exit_status(problems(folded, baseline), "incremental")


def table(info: dict[str, Any], batches: int, streamed_s: float, folded: dict[str, Any], base: dict[str, Any]) -> str:
    def cell(r: dict[str, Any], key: str, unit: str) -> str:
        return r["error"] if "error" in r else f"{r[key]:,}{unit}"

    wait_ok = "error" not in folded and folded["wait_s"] <= WAIT_TARGET_S
    rss_ok = "error" not in folded and folded["rss_mib"] <= RSS_TARGET_MIB
    rows = [
        "| measure | folded while running | today: first open after the end | target |",
        "|---|---|---|---|",
        f"| end marker -> the 4 answers complete | {cell(folded, 'wait_s', ' s')} | {cell(base, 'wait_s', ' s')} "
        f"| <= {WAIT_TARGET_S:g} s: {'PASS' if wait_ok else 'FAIL'} |",
        f"| server peak RSS | {cell(folded, 'rss_mib', ' MiB')} | {cell(base, 'rss_mib', ' MiB')} "
        f"| <= {RSS_TARGET_MIB:,.0f} MiB: {'PASS' if rss_ok else 'FAIL'} |",
        f"| folds while running (their total time) | {folded.get('folds', '-')} ({folded.get('fold_seconds', '-')} s) "
        f"| - | |",
        f"| GET tasks?limit=100 once complete, median of {PAGE_REPEATS} (files of the tasks table) "
        f"| {folded.get('page_ms', '-')} ms ({folded.get('task_files', '-')}) "
        f"| {base.get('page_ms', '-')} ms ({base.get('task_files', '-')}) | |",
    ]
    for name in _routes("x"):
        rows.append(
            f"| answer: {name} | {folded.get('answers', {}).get(name, '-')} | {base.get('answers', {}).get(name, '-')} "
            "| same |"
        )
    head = (
        f"{info['tasks']:,} task attempts, streamed in {batches} batches over {streamed_s:.0f} s; "
        f"answers: tasks total, summarized attempts, timeline count, search total"
    )
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in folded.get("phases", {}).items() if v >= 0.05)
    tail = f"\n\nThe folding server's build at the end: {phases}." if phases else ""
    if "from_folds" in folded and not folded["from_folds"]:
        tail += " Its tables were built whole, not from its folds (they had fallen behind the stream, or failed)."
    if "build_began_s" in folded:
        answered = ", ".join(f"{k} {v} ms" for k, v in folded["answer_ms"].items())
        tail += (
            f" From the end marker, its build began after {folded['build_began_s']} s and took {folded['build_s']} s;"
            f" the answers' requests once built: {answered}. The log tables: {folded.get('log_files')} part(s)."
        )
    return head + "\n\n" + "\n".join(rows) + tail


def problems(folded: dict[str, Any], base: dict[str, Any]) -> list[str]:
    found = [f"{name}: {r['error']}" for name, r in (("folded", folded), ("baseline", base)) if "error" in r]
    if found:
        return found
    if folded["wait_s"] > WAIT_TARGET_S:
        found.append(f"answers complete {folded['wait_s']} s after the end marker (target {WAIT_TARGET_S:g} s)")
    if folded["rss_mib"] > RSS_TARGET_MIB:
        found.append(f"peak RSS {folded['rss_mib']} MiB (target {RSS_TARGET_MIB:,.0f} MiB)")
    if folded["answers"] != base["answers"]:
        found.append(f"answers differ from the baseline's: {folded['answers']} vs {base['answers']}")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.incremental", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=100_000, help="task attempts of the synthetic session")
    p.add_argument("--batches", type=int, default=20, help="pieces every archived file is shipped in")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between two batches")
    p.add_argument("--fold-interval", type=float, default=1.0, help="the server's --fold-interval")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--child", choices=("fold", "one-shot"), help=argparse.SUPPRESS)
    p.add_argument("--archive", help=argparse.SUPPRESS)
    p.add_argument("--session", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    p.add_argument("--control", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.archive, a.session, a.cache_dir, a.control, a.child == "fold", a.fold_interval)
        return 0
    with tempfile.TemporaryDirectory(prefix="rayhistory-incremental-") as tmp:
        return run(a.tasks, a.batches, a.interval, a.fold_interval, a.seed, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
