"""Load test: 50 concurrent clients for 60 s against one history-server process over a 100k-task session, mixing
the routes Ray's UI calls, PromQL panel queries and the heavy requests a careless (or hostile) user sends.

Reproduce (from the repository root):

    .venv/bin/python -m benchmarks.load_test                          # 100k tasks, 50 clients, 60 s
    .venv/bin/python -m benchmarks.load_test --tasks 20000 --seconds 15 --clients 10   # a quick run

The data: benchmarks/synthetic_session.py's session of N task attempts (8 nodes, Ray 2.60's export events and
worker logs), and beside it a 6-hour, 8-node metrics session (benchmarks/promql_data.py's generator, every
family Ray's Default dashboard reads). The server runs as `rayhistory serve` runs it (uvicorn, its default limits),
compacts the task session on first open (timed), then takes the load. Each client loops without pause: picks a
request from the mix (fixed seed), sends it, waits for the whole answer.

Baseline in the same run: each route alone, one client (the latency a route has without load), beside its p50/p99
under load. Targets (issue 9): p99 <= 1 s for page routes, no 5xx but deliberate 503s (with Retry-After), server
peak RSS <= 2 GB. The table is markdown on stdout, progress on stderr; the exit status is 1 when a target is
missed or a request fails in a way it should not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from benchmarks import promql_dashboard as pd
from benchmarks import promql_data as pdata
from benchmarks import synthetic_session
from benchmarks.outcome import exit_status

P99_PAGE_TARGET_S = 1.0
RSS_TARGET_MIB = 2048
BOMB = "count_over_time(up[100y:1s])"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Route:
    name: str
    family: str  # "page" (p99 target), "promql", "heavy"
    weight: float
    method: str
    url: str
    data: dict | None = None
    ok: tuple[int, ...] = (200,)  # statuses that are right answers for this request


@dataclass
class Stats:
    times: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    wrong: list[str] = field(default_factory=list)
    bytes: int = 0


def prepare(work: Path, tasks: int) -> dict:
    params = {"tasks": tasks, "v": 1}
    done = work / "dataset.json"
    if done.exists() and json.loads(done.read_text()).get("params") == params:
        say(f"reusing the data in {work}")
        return json.loads(done.read_text())
    work.mkdir(parents=True, exist_ok=True)
    archive = work / "archive"
    info = synthetic_session.generate(str(archive), tasks, log=say)
    exprs = [e for _, e, _ in pd.dashboard_requests(60_000, 6 * pdata.HOUR_MS)]
    session = pdata.make_session(8, 6, seed=7)
    series = pdata.generate(session, exprs)
    metrics_id = pdata.register(session, archive, work / "cache", series)
    data = {
        "params": params,
        "tasks_id": info["session_id"],
        "metrics_id": metrics_id,
        "metrics_start_ms": pdata.od.T0_MS,
        "metrics_end_ms": pdata.od.T0_MS + 6 * pdata.HOUR_MS,
    }
    done.write_text(json.dumps(data))
    return data


def forget_compaction(work: Path, session_id: str) -> None:
    """Drop the task session's compacted tables (local cache and archive) left by an earlier run."""
    import shutil

    from archive.compacted import COMPACTION_VERSION
    from archive.layout import SessionRef

    for cache in (work / "cache").glob("compacted-c*"):
        shutil.rmtree(cache / session_id, ignore_errors=True)
    prefix = SessionRef.from_id(session_id).compacted_prefix(COMPACTION_VERSION)
    shutil.rmtree(work / "archive" / prefix, ignore_errors=True)


def start_server(work: Path, port: int) -> subprocess.Popen:
    log = open(work / "server.log", "wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "serve",
            "--archive",
            str(work / "archive"),
            "--cache-dir",
            str(work / "cache"),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_until(check, what: str, timeout: float, proc: subprocess.Popen) -> float:
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited while waiting for {what}")
        try:
            if check():
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.25)


def routes(base: str, tasks_id: str, data: dict, client: httpx.Client) -> list[Route]:
    s = f"{base}/sessions/{tasks_id}"
    jobs = client.get(f"{s}/api/jobs/").json()
    job = next(j["job_id"] for j in jobs if j.get("job_id"))
    node = client.get(f"{s}/api/v0/nodes").json()["data"]["result"]["result"][0]["node_id"]
    files = client.get(f"{s}/api/v0/logs", params={"node_id": node}).json()["data"]["result"]
    worker_out = sorted(f for fs in files.values() for f in fs if f.startswith("worker-") and f.endswith(".out"))[0]
    filt = {"filter_keys": "job_id", "filter_predicates": "=", "filter_values": job}
    out = [
        Route("ui: nodes?view=summary", "page", 6, "GET", f"{s}/nodes?view=summary"),
        Route("ui: index.html", "page", 1, "GET", f"{s}/"),
        Route("ui: api/jobs/", "page", 3, "GET", f"{s}/api/jobs/"),
        Route(
            "ui: tasks?limit=100",
            "page",
            3,
            "GET",
            f"{s}/api/v0/tasks?detail=1&limit=100&" + "&".join(f"{k}={v}" for k, v in filt.items()),
        ),
        Route(
            "ui: tasks/summarize (job)",
            "page",
            3,
            "GET",
            f"{s}/api/v0/tasks/summarize?" + "&".join(f"{k}={v}" for k, v in filt.items()),
        ),
        Route("ui: logical/actors", "page", 2, "GET", f"{s}/logical/actors"),
        Route("ui: cluster_status", "page", 2, "GET", f"{s}/api/cluster_status?format=1"),
        Route("ui: events", "page", 1, "GET", f"{s}/events"),
        Route("ui: logs of a node", "page", 1, "GET", f"{s}/api/v0/logs?node_id={node}"),
        Route(
            "ui: log file, 1,000 lines",
            "page",
            2,
            "GET",
            f"{s}/api/v0/logs/file?node_id={node}&filename={worker_out}&lines=1000",
        ),
        Route("ours: session list", "page", 2, "GET", f"{base}/api/v1/sessions"),
        Route("ours: overview page", "page", 1, "GET", f"{s}/overview"),
        Route("heavy: tasks?limit=10000", "heavy", 0.5, "GET", f"{s}/api/v0/tasks?detail=1&limit=10000"),
        Route("heavy: trace download", "heavy", 0.3, "GET", f"{s}/api/v0/tasks/timeline?download=1"),
        Route(
            "heavy: log file lines=-1",
            "heavy",
            0.3,
            "GET",
            f"{s}/api/v0/logs/file?node_id={node}&filename={worker_out}&lines=-1",
        ),
        Route("heavy: timeline JSON", "heavy", 0.3, "GET", f"{base}/api/v1/sessions/{tasks_id}/timeline"),
        Route("heavy: sessions?limit=10000", "heavy", 0.3, "GET", f"{base}/api/v1/sessions?limit=10000"),
        Route("heavy: live list", "heavy", 0.3, "GET", f"{base}/api/v1/live"),
        Route(
            "heavy: the 100y subquery", "heavy", 0.3, "GET", f"{base}/prometheus/api/v1/query?query={BOMB}", ok=(422,)
        ),
    ]
    start_s, end_s = data["metrics_start_ms"] / 1000, data["metrics_end_ms"] / 1000
    prom = f"{base}/sessions/{data['metrics_id']}/prometheus/api/v1"
    panels = pd.dashboard_requests(60_000, data["metrics_end_ms"] - data["metrics_start_ms"])
    weight = 10 / len(panels)  # all panels together weigh as much as the most polled UI route and more
    for title, expr, instant in panels:
        form = (
            {"query": expr, "time": f"{end_s:.3f}"}
            if instant
            else {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": "60"}
        )
        out.append(
            Route(
                f"promql: {title}",
                "promql",
                weight,
                "POST",
                f"{prom}/query" if instant else f"{prom}/query_range",
                form,
                ok=(200, 503),
            )
        )
    return out


async def _one(client: httpx.AsyncClient, route: Route, stats: Stats) -> None:
    t = time.perf_counter()
    try:
        r = await client.request(route.method, route.url, data=route.data)
        status, body = r.status_code, r.content
        retry = r.headers.get("retry-after")
    except httpx.HTTPError as e:
        stats.wrong.append(f"{type(e).__name__}: {e}")
        status, body, retry = 0, b"", None
    stats.times.append(time.perf_counter() - t)
    stats.statuses[status] += 1
    stats.bytes += len(body)
    if status and status not in route.ok and not (status == 503 and retry):
        stats.wrong.append(f"{status}: {body[:200]!r}")


async def load(rts: list[Route], clients: int, seconds: float, seed: int) -> dict[str, Stats]:
    stats: dict[str, Stats] = {r.name: Stats() for r in rts}
    weights = [r.weight for r in rts]
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def user(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            while time.monotonic() < deadline:
                route = rng.choices(rts, weights)[0]
                await _one(client, route, stats[route.name])

        async def progress() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(5)
                done = sum(len(s.times) for s in stats.values())
                say(f"  {done:,} requests, {max(0.0, deadline - time.monotonic()):.0f} s left")

        await asyncio.gather(progress(), *(user(i) for i in range(clients)))
    return stats


def alone(rts: list[Route]) -> dict[str, float]:
    """Each route once, one client, after a warm-up request: the latency without load."""
    out = {}
    with httpx.Client(timeout=120) as c:
        for r in rts:
            c.request(r.method, r.url, data=r.data)
            t = time.perf_counter()
            c.request(r.method, r.url, data=r.data)
            out[r.name] = time.perf_counter() - t
    return out


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(times, q)) if times else float("nan")


def table(rts, stats, single, rss, compaction_s, args) -> tuple[str, list[str]]:
    problems: list[str] = []
    lines = [
        f"Load test: {args.clients} clients for {args.seconds:g} s, one server process, a {args.tasks:,}-task "
        f"session (compacted on first open in {compaction_s:.1f} s) and a 6 h metrics session.",
        "",
        "| route | family | requests | alone (1 client) | p50 under load | p99 under load | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    fam_times: dict[str, list[float]] = defaultdict(list)
    for r in rts:
        s = stats[r.name]
        fam_times[r.family] += s.times
        if r.family == "promql":
            continue
        sts = ", ".join(f"{k}: {v}" for k, v in sorted(s.statuses.items()))
        lines.append(
            f"| {r.name} | {r.family} | {len(s.times)} | {single[r.name] * 1000:.0f} ms | "
            f"{pct(s.times, 50) * 1000:.0f} ms | {pct(s.times, 99) * 1000:.0f} ms | {sts} |"
        )
    prom = [r for r in rts if r.family == "promql"]
    pst: dict[int, int] = defaultdict(int)
    for r in prom:
        for k, v in stats[r.name].statuses.items():
            pst[k] += v
    lines.append(
        f"| promql: {len(prom)} Default-dashboard panels | promql | {len(fam_times['promql'])} | "
        f"{np.median([single[r.name] for r in prom]) * 1000:.0f} ms (median panel) | "
        f"{pct(fam_times['promql'], 50) * 1000:.0f} ms | {pct(fam_times['promql'], 99) * 1000:.0f} ms | "
        + ", ".join(f"{k}: {v}" for k, v in sorted(pst.items()))
        + " |"
    )
    total = sum(len(s.times) for s in stats.values())
    five = sum(v for s in stats.values() for k, v in s.statuses.items() if k >= 500)
    wrong = [(n, w) for n, s in stats.items() for w in s.wrong]
    page_p99 = pct(fam_times["page"], 99)
    checks = [
        (
            "p99 of page routes",
            f"{page_p99 * 1000:.0f} ms",
            f"<= {P99_PAGE_TARGET_S * 1000:.0f} ms",
            page_p99 <= P99_PAGE_TARGET_S,
        ),
        (
            "unexpected answers (5xx other than 503 + Retry-After, wrong status, transport errors)",
            str(len(wrong)),
            "0",
            not wrong,
        ),
        ("server peak RSS", f"{rss:.0f} MiB", f"<= {RSS_TARGET_MIB} MiB", rss <= RSS_TARGET_MIB),
    ]
    lines += [
        "",
        f"{total:,} requests ({total / args.seconds:.0f}/s), {five} answered 5xx (deliberate 503s included).",
        "",
        "| check | measured | target | |",
        "|---|---|---|---|",
    ]
    for name, got, want, good in checks:
        lines.append(f"| {name} | {got} | {want} | {'ok' if good else 'FAIL'} |")
        if not good:
            problems.append(f"FAIL {name}: {got}, target {want}")
    problems += [f"{name}: {w}" for name, w in wrong[:10]]
    return "\n".join(lines), problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load_test", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=".rayhistory/bench-load", help="kept between runs with the same --tasks")
    args = p.parse_args(argv)
    work = Path(args.workdir).resolve()
    data = prepare(work, args.tasks)
    tasks_id = data["tasks_id"]
    from tests.servers.prometheus import _free_port

    forget_compaction(work, tasks_id)  # the first open is measured: it compacts
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(work, port)
    try:
        wait_until(lambda: httpx.get(f"{base}/api/v1/sessions", timeout=5).status_code == 200, "the server", 60, proc)
        say("server up; compacting the task session (first open)")
        compaction_s = wait_until(
            lambda: httpx.get(f"{base}/sessions/{tasks_id}/api/jobs/", timeout=60).status_code == 200,
            "the first open",
            900,
            proc,
        )
        with httpx.Client(timeout=120) as c:
            rts = routes(base, tasks_id, data, c)
        say(f"{len(rts)} routes; each alone first")
        single = alone(rts)
        say(f"{args.clients} clients for {args.seconds:g} s")
        stats = asyncio.run(load(rts, args.clients, args.seconds, args.seed))
        rss = pd.peak_rss_mib(proc.pid) or float("nan")
        alive = proc.poll() is None and httpx.get(f"{base}/api/v1/sessions", timeout=10).status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    text, problems = table(rts, stats, single, rss, compaction_s, args)
    print(text)
    if not alive:
        problems.append("FAIL: the server was not answering after the load")
    return exit_status(problems, "load_test")


if __name__ == "__main__":
    sys.exit(main())
