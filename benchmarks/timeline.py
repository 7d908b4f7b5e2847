"""The timeline at a million tasks: first view, every zoom and pan step, browser frames, server memory, and Ray's
trace download complete.

    .venv/bin/python -m benchmarks.timeline --tasks 1000000        # generates the session into --work first
    .venv/bin/python -m benchmarks.timeline --tasks 20000 --work /tmp/tl-bench-small   # a quick run

The session is benchmarks/synthetic_session.py's (8 nodes x 16 workers, Ray 2.60's export events). The server runs
as `rayhistory serve` runs it; it compacts the session on first open (not timed here, see open_session.py), then it
is restarted so that its peak RSS is that of timeline requests alone. Measured against it:
- the first view in Chromium: milliseconds from navigation start until the first answer is drawn;
- zoom steps (x2 around the middle, down to a few tasks) and pan steps (half a window) over HTTP, each timed;
- browser frames while the page is zoomed and panned with the wheel and the mouse (requestAnimationFrame
  intervals, and the page's own draw times);
- the server's peak RSS (VmHWM) over all of the above;
- Ray's trace download, streamed and counted (its "X" events against the profile events of the tables).
Baseline in the same run: the answer the timeline route gave before the level of detail (every attempt, at most
200,000, as columns), computed over the same tables in a child process: its time, size and peak RSS.
Targets (issue 17): first view <= 1 s, each step <= 200 ms, server RSS <= 300 MiB, every answer <= ~2 MB, the
trace holds every task event. Markdown table on stdout, progress on stderr, exit 1 on a missed target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import synthetic_session
from benchmarks.load_test import start_server, wait_until
from benchmarks.outcome import exit_status
from benchmarks.promql_dashboard import peak_rss_mib

FIRST_VIEW_S = 1.0
STEP_S = 0.200
RSS_MIB = 300
ANSWER_BYTES = 2_100_000
OLD_LIMIT = 200_000  # what the route sent before: every attempt up to this many


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def baseline(tables: str) -> dict[str, Any]:
    """The route's answer before the level of detail (historyserver/queries/overview.py's timeline() until
    issue 17), over the same tables: run in a child process for its own peak RSS."""
    code = f"""
import json, resource, time, orjson
from pathlib import Path
from historyserver.queries.session_db import SessionDB
t0 = time.monotonic()
db = SessionDB(Path({tables!r}))
where = "WHERE type <> 'DRIVER_TASK'"
total = db.query(f"SELECT count(*) FROM tasks {{where}}")[0][0]
rows = db.query(f'''SELECT task_id, attempt_number, name, state, coalesce(node_id, ''), coalesce(worker_id, ''),
    coalesce(start_time_ms, creation_time_ms), coalesce(end_time_ms, start_time_ms, creation_time_ms), job_id, unfinished
    FROM tasks {{where}} AND coalesce(start_time_ms, creation_time_ms) IS NOT NULL ORDER BY node_id, worker_id, 7
    LIMIT {OLD_LIMIT}''')
body = orjson.dumps({{"total": total, "shown": len(rows), "rows": [list(r) for r in rows]}})
print(json.dumps({{"seconds": time.monotonic() - t0, "bytes": len(body), "shown": len(rows), "total": total,
    "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def steps(client: httpx.Client, url: str, lo: float, hi: float, width: int) -> list[dict[str, Any]]:
    """Zoom x2 around a point until few tasks are in view, then pan by half a window each way."""
    out = []
    mid = lo + (hi - lo) * 0.37
    start, end = lo, hi
    for kind in ["full"] + ["zoom"] * 40:
        if kind == "zoom":
            span = (end - start) / 2
            start, end = mid - span / 2, mid + span / 2
        out.append(_timed(client, url, kind, start, end, width))
        if out[-1]["total"] <= 3 or end - start < 1:
            break
    for kind, shift in [("pan", 0.5)] * 6 + [("pan", -0.5)] * 6:
        span = end - start
        start, end = start + span * shift, end + span * shift
        out.append(_timed(client, url, kind, start, end, width))
    # Zoomed back out, step by step, to the whole session.
    while end - start < hi - lo:
        span = min((end - start) * 2, hi - lo)
        start, end = max(lo, mid - span / 2), max(lo, mid - span / 2) + span
        out.append(_timed(client, url, "zoom out", start, end, width))
    return out


def _timed(client: httpx.Client, url: str, kind: str, start: float, end: float, width: int) -> dict[str, Any]:
    t0 = time.monotonic()
    r = client.get(url, params={"start": start, "end": end, "width": width})
    took = time.monotonic() - t0
    r.raise_for_status()
    body = r.json()
    return {"kind": kind, "seconds": took, "bytes": len(r.content), "total": body["total"], "mode": body["mode"]}


def browser_run(base: str, sid: str) -> dict[str, Any]:
    from tests.browser import browser

    with browser() as b:
        page = b.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/sessions/{sid}/timeline")
        page.wait_for_function(
            "window.__rayhistoryTimeline && window.__rayhistoryTimeline.stats.firstDrawMs", timeout=60000
        )
        first_ms = page.evaluate("window.__rayhistoryTimeline.stats.firstDrawMs")
        # Frames while the user zooms in with the wheel, pans by dragging and zooms back out.
        page.evaluate("""() => { window.__frames = []; let last = performance.now();
            const tick = (t) => { window.__frames.push(t - last); last = t; if (!window.__stopFrames) requestAnimationFrame(tick); };
            requestAnimationFrame(tick); }""")
        box = page.locator("#timeline").bounding_box()
        cx, cy = box["x"] + 190 + (box["width"] - 200) * 0.37, box["y"] + 60
        page.mouse.move(cx, cy)
        for _ in range(40):
            page.mouse.wheel(0, -300)
            page.wait_for_timeout(50)
        for dx in (-300, 300, -300, 300):
            page.mouse.move(cx, cy)
            page.mouse.down()
            for i in range(10):
                page.mouse.move(cx + dx * (i + 1) / 10, cy)
                page.wait_for_timeout(16)
            page.mouse.up()
        for _ in range(40):
            page.mouse.wheel(0, 300)
            page.wait_for_timeout(50)
        page.wait_for_timeout(500)
        page.evaluate("window.__stopFrames = true")
        frames = page.evaluate("window.__frames")[1:]
        stats = page.evaluate("window.__rayhistoryTimeline.stats")
    frames.sort()
    return {
        "first_ms": first_ms,
        "frames": len(frames),
        "frame_p50": statistics.median(frames),
        "frame_p95": frames[int(len(frames) * 0.95)],
        "frame_max": frames[-1],
        "draw_max": stats["maxDrawMs"],
        "requests": len(stats["requests"]),
        "errors": errors,
    }


def trace(client: httpx.Client, base: str, sid: str) -> dict[str, Any]:
    t0 = time.monotonic()
    events = size = 0
    tail = b""
    marker = b'"ph": "X"'
    with client.stream("GET", f"{base}/sessions/{sid}/api/v0/tasks/timeline", params={"download": 1}) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            size += len(chunk)
            data = tail + chunk
            events += data.count(marker)
            tail = data[-(len(marker) - 1) :]
            events -= tail.count(marker)  # counted again with the next chunk
    return {"seconds": time.monotonic() - t0, "bytes": size, "events": events}


def expected_events(tables: Path) -> int:
    from historyserver.queries.session_db import NOT_DRIVER, SessionDB
    from historyserver.queries.timeline import TRACED_COMPONENTS

    db = SessionDB(tables)
    try:
        return db.query(
            f"""SELECT count(*) FROM profile_events p JOIN (SELECT task_id, attempt_number FROM tasks WHERE {NOT_DRIVER})
                USING (task_id, attempt_number)
                WHERE p.component_type IN {TRACED_COMPONENTS} AND p.start_time IS NOT NULL AND p.end_time IS NOT NULL"""
        )[0][0]
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.timeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--work", default="/tmp/rayhistory-bench-timeline", help="folder for the archive and the cache")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--skip-trace", action="store_true", help="leave out the trace download (minutes at 1M)")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    info = synthetic_session.generate(str(work / "archive"), args.tasks, log=say)
    sid = info["session_id"]
    base = f"http://127.0.0.1:{args.port}"
    url = f"{base}/api/v1/sessions/{sid}/timeline"
    problems: list[str] = []

    proc = start_server(work, args.port)
    try:
        with httpx.Client(timeout=3600) as c:
            wait_until(lambda: c.get(f"{base}/healthz").status_code == 200, "the server", 60, proc)
            say("compacting (first open) ...")
            t0 = time.monotonic()
            c.get(f"{base}/api/v1/sessions/{sid}/overview").raise_for_status()
            say(f"compacted in {time.monotonic() - t0:.1f}s")
    finally:
        proc.terminate()
        proc.wait(30)
    [tables] = list((work / "cache").glob(f"compacted-c*/{sid}"))

    proc = start_server(work, args.port)  # fresh: its peak RSS is that of timeline requests
    try:
        with httpx.Client(timeout=3600) as c:
            wait_until(lambda: c.get(f"{base}/healthz").status_code == 200, "the server", 60, proc)
            whole = c.get(url, params={"width": 1200}).json()
            lo, hi = whole["extent"]["start"], whole["extent"]["end"]
            say("zoom and pan steps over HTTP ...")
            timed = steps(c, url, lo, hi, 1200)
            say("Chromium ...")
            page = browser_run(base, sid)
            rss_views = peak_rss_mib(proc.pid) or float("nan")
            tr = None
            if not args.skip_trace:
                say("Ray's trace download ...")
                tr = trace(c, base, sid)
            rss = peak_rss_mib(proc.pid) or float("nan")
    finally:
        proc.terminate()
        proc.wait(30)
    say("baseline ...")
    old = baseline(str(tables))
    want = expected_events(tables) if tr else None

    secs = [s["seconds"] for s in timed]
    worst = max(timed, key=lambda s: s["seconds"])
    biggest = max(s["bytes"] for s in timed)
    rows = [
        (
            "first view drawn (Chromium, from navigation start)",
            f"{page['first_ms']:.0f} ms",
            f"<= {FIRST_VIEW_S * 1000:.0f} ms",
            page["first_ms"] <= FIRST_VIEW_S * 1000,
            f"{old['seconds'] * 1000:.0f} ms to build, {old['bytes'] / 1e6:.1f} MB, {old['shown']:,} of {old['total']:,}",
        ),
        (
            f"zoom/pan steps over HTTP ({len(timed)}): median / worst",
            f"{statistics.median(secs) * 1000:.0f} / "
            f"{worst['seconds'] * 1000:.0f} ms ({worst['kind']}, {worst['mode']})",
            f"<= {STEP_S * 1000:.0f} ms each",
            worst["seconds"] <= STEP_S,
            "one answer, no zoom",
        ),
        (
            "largest answer",
            f"{biggest / 1e6:.2f} MB",
            "<= ~2 MB",
            biggest <= ANSWER_BYTES,
            f"{old['bytes'] / 1e6:.1f} MB",
        ),
        (
            "answers in density / attempts mode",
            f"{sum(s['mode'] == 'density' for s in timed)} / {sum(s['mode'] == 'attempts' for s in timed)}",
            "",
            True,
            "",
        ),
        (
            "browser frames while zooming and panning: p50 / p95 / max",
            f"{page['frame_p50']:.1f} / {page['frame_p95']:.1f} / {page['frame_max']:.0f} ms ({page['frames']} frames)",
            "",
            True,
            "",
        ),
        ("longest canvas draw", f"{page['draw_max']:.1f} ms", "", True, ""),
        (
            "server peak RSS, timeline views",
            f"{rss_views:.0f} MiB",
            f"<= {RSS_MIB} MiB",
            rss_views <= RSS_MIB,
            f"{old['rss_mib']:.0f} MiB (query and JSON alone)",
        ),
    ]
    if tr is not None:
        rows += [
            (
                "Ray's trace download: task events (X)",
                f"{tr['events']:,} of {want:,}",
                "all",
                tr["events"] == want,
                "Ray 2.60: those of its first 10,000 tasks",
            ),
            ("Ray's trace download: time, size", f"{tr['seconds']:.1f} s, {tr['bytes'] / 1e6:,.0f} MB", "", True, ""),
            ("server peak RSS, with the trace download", f"{rss:.0f} MiB", "", True, ""),
        ]
    print(f"`.venv/bin/python -m benchmarks.timeline --tasks {args.tasks}` ({info['tasks']:,} task attempts)\n")
    print("| measure | ours | target | pass/fail | baseline: the full-list answer before |")
    print("|---|---|---|---|---|")
    for name, ours, target, ok, base_text in rows:
        print(f"| {name} | {ours} | {target} | {'' if not target else 'PASS' if ok else 'FAIL'} | {base_text} |")
        if target and not ok:
            problems.append(f"{name}: {ours} (target {target})")
    if page["errors"]:
        problems.append(f"the page raised: {page['errors'][:3]}")
    return exit_status(problems, "benchmarks.timeline")


if __name__ == "__main__":
    sys.exit(main())
