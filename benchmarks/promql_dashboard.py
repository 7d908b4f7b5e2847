"""Ray's Default Grafana dashboard over a day of a 50-node session: every panel through our Prometheus API, side by
side with a real Prometheus 2.42 holding the same samples, in one run (targets: at most 2x Prometheus's time, issue 5;
a peak RSS of the server process no higher than Prometheus's, issue 16).

Reproduce (from the repository root):

    .venv/bin/python -m benchmarks.promql_dashboard                      # 50 nodes, 24 h, 60 s step
    .venv/bin/python -m benchmarks.promql_dashboard --nodes 5 --hours 2  # a quick run

The session is generated deterministically with tests/oracle_data.py's models of Ray's series (every family the
Default dashboard reads, labelled as Ray 2.60 labels them, 15 s scrapes with per-node phase and jitter, failed
scrapes, workers that join late or leave early, series that come and go). The same samples go two ways:
- our side: the compacted tables (metric_series, metric_samples) written directly as Parquet in the compaction's
  schema (series numbered in sorted (name, labels) order, samples sorted by series then time, written by DuckDB as
  the compaction writes them), next to the session's other tables built by the real compaction, in the Warehouse's
  cache, for a session registered in an archive (manifest and index entry); the history server runs in its own
  process (`rayhistory serve` with its defaults, on 127.0.0.1) and reads them as it reads any compacted session;
- Prometheus: one OpenMetrics file backfilled with `promtool tsdb create-blocks-from openmetrics` (blocks of up to
  24 h, as a Prometheus that has held the data for a day would have compacted them), then Prometheus started on it.

Each panel target is sent as Grafana sends it (tests/promql_panels.py: variables at "All") for a 24 h range at
Grafana's step for a ~1,440 px wide panel: max(scrape interval, range / maxDataPoints) = 86400 s / 1440 = 60 s.
Requests are form-encoded POSTs to /api/v1/query_range on both sides, one at a time over one keep-alive
connection; a pass over every panel first (cold: the server has not read the session yet), then the measured warm
pass. Answers are compared (same series, timestamps, values within 1e-6): a fast wrong answer is no answer.
The table is printed as markdown on stdout; progress goes to stderr. `--workdir DIR` keeps the generated data
(and reuses it on the next run with the same parameters).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.outcome import exit_status
from benchmarks.promql_data import HOUR_MS, prepare, say
from tests import oracle_data as od

DASHBOARD = "default_grafana_dashboard.json"
DEFAULT_WIDTH_PX = 1440
RATIO_TARGET = 2.0
RSS_TARGET = 1.0  # our peak RSS over Prometheus's, in the same run (issue 16)
REL_TOL = 1e-6


def dashboard_requests(step_ms: int, range_ms: int) -> list[tuple[str, str, bool]]:
    """(panel title and refId, expression as Grafana sends it, instant?) of every Default dashboard target."""
    from tests.promql_panels import GrafanaRequest, interpolate, load_dashboards

    dash = next(d for d in load_dashboards() if d.file == DASHBOARD)
    req = GrafanaRequest({}, interval_ms=step_ms, range_ms=range_ms)
    return [(f"{t.title} ({t.ref_id})", interpolate(t.expr, dash, req), t.instant) for t in dash.targets]


# --- the servers --------------------------------------------------------------------------------------------------


def start_ours(work: Path, session_id: str):
    import httpx

    from tests.servers.prometheus import _free_port

    port = _free_port()
    log = open(work / "historyserver.log", "wb")
    # The server as users start it (`rayhistory serve`, with its defaults): the command line sets up the process
    # (process_memory.py) before it imports anything. No RAYHISTORY_ variable of this shell leaks into it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "rayhistory.cli", "serve", "--archive", str(work / "archive")]
        + ["--cache-dir", str(work / "cache"), "--port", str(port), "--no-compact-on-end"],
        cwd=Path(__file__).resolve().parent.parent,
        env={k: v for k, v in os.environ.items() if not k.startswith("RAYHISTORY_")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/sessions/{session_id}/prometheus"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the history server exited: {(work / 'historyserver.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/sessions", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the history server did not start")


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_pass(
    client, requests: list[tuple[str, str, bool]], start_s: float, end_s: float, step_s: float
) -> list[tuple[float, bytes, int]]:
    """(seconds, body, status) per panel, one request at a time."""
    out = []
    for _, expr, instant in requests:
        if instant:
            path, form = "/api/v1/query", {"query": expr, "time": f"{end_s:.3f}"}
        else:
            path, form = (
                "/api/v1/query_range",
                {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"},
            )
        t = time.perf_counter()
        r = client.post(path, data=form)
        body = r.content
        out.append((time.perf_counter() - t, body, r.status_code))
    return out


# --- checking the answers -----------------------------------------------------------------------------------------


def _num(s: str) -> float:
    return float(s.replace("+Inf", "inf").replace("-Inf", "-inf"))


def differs(ours: bytes, theirs: bytes) -> str | None:
    a, b = json.loads(ours), json.loads(theirs)
    if a.get("status") != b.get("status"):
        return f"status {a.get('status')} vs Prometheus {b.get('status')}: {a.get('error') or b.get('error')}"
    if a["status"] != "success":  # two errors are not an agreement: the panel was not measured at all
        return f"both answered {a['status']}: ours {a.get('error')!r}, Prometheus {b.get('error')!r}"
    a, b = a["data"], b["data"]
    if a["resultType"] != b["resultType"]:
        return f"resultType {a['resultType']} vs {b['resultType']}"
    key = lambda r: json.dumps(r["metric"], sort_keys=True)  # noqa: E731
    ra, rb = {key(r): r for r in a["result"]}, {key(r): r for r in b["result"]}
    if set(ra) != set(rb):
        return f"series: {len(ra)} vs Prometheus {len(rb)}"
    for k, r in rb.items():
        pa_, pb = ra[k].get("values", [ra[k].get("value")]), r.get("values", [r.get("value")])
        if [p[0] for p in pa_] != [p[0] for p in pb]:
            return f"{k}: timestamps differ ({len(pa_)} vs {len(pb)} points)"
        for x, y in zip(pa_, pb):
            u, v = _num(x[1]), _num(y[1])
            if not (u == v or (math.isnan(u) and math.isnan(v)) or abs(u - v) <= REL_TOL * max(abs(u), abs(v))):
                return f"{k} at {x[0]}: {x[1]} vs Prometheus {y[1]}"
    return None


# --- the table ----------------------------------------------------------------------------------------------------


def table(
    info: dict[str, Any], args, requests, passes: dict[str, dict[str, list]], rss: dict[str, float | None], agree: int
) -> str:
    def total(side: str, kind: str) -> float:
        return sum(t for t, _, _ in passes[side][kind])

    lines = ["| measure | Rayhistory | Prometheus 2.42 | ratio |", "|---|---|---|---|"]
    for kind in ("cold", "warm"):
        ours, prom = total("ours", kind), total("prom", kind)
        label = f"all {len(requests)} panels, {kind}" + (" (measured)" if kind == "warm" else " (first pass)")
        lines.append(f"| {label} | {ours:.2f} s | {prom:.2f} s | {ours / prom:.2f}x |")
    ratio = total("ours", "warm") / total("prom", "warm")
    lines.append(
        f"| target: warm <= {RATIO_TARGET:g}x Prometheus | | | "
        f"{'PASS' if ratio <= RATIO_TARGET else 'FAIL'} ({ratio:.2f}x) |"
    )
    fmt = lambda v: "n/a" if v is None else f"{v:,.0f} MiB"  # noqa: E731
    ours_rss, prom_rss = rss["ours"], rss["prom"]
    rss_ratio = ours_rss / prom_rss if ours_rss and prom_rss else None
    lines.append(
        f"| peak RSS of the server process | {fmt(ours_rss)} | {fmt(prom_rss)} | "
        f"{'n/a' if rss_ratio is None else f'{rss_ratio:.2f}x'} |"
    )
    lines.append(f"| target: peak RSS <= {RSS_TARGET:g}x Prometheus's | | | {rss_verdict(rss)} |")
    lines.append(f"| answers equal to Prometheus's | {agree}/{len(requests)} | | |")
    lines += [
        "",
        "Slowest 5 panels (warm pass):",
        "",
        "| panel (refId) | Rayhistory | Prometheus 2.42 | ratio |",
        "|---|---|---|---|",
    ]
    warm_o, warm_p = passes["ours"]["warm"], passes["prom"]["warm"]
    for i in sorted(range(len(requests)), key=lambda i: -warm_o[i][0])[:5]:
        lines.append(
            f"| {requests[i][0]} | {warm_o[i][0] * 1000:.0f} ms | {warm_p[i][0] * 1000:.0f} ms | "
            f"{warm_o[i][0] / warm_p[i][0]:.1f}x |"
        )
    return "\n".join(lines)


def rss_verdict(rss: dict[str, float | None]) -> str:
    ours, prom = rss["ours"], rss["prom"]
    if not ours or not prom:
        return "FAIL (not measured)"
    return f"{'PASS' if ours <= RSS_TARGET * prom else 'FAIL'} ({ours / prom:.2f}x)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.promql_dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument(
        "--step",
        type=float,
        default=None,
        help="query step in seconds (default: Grafana's for a 1,440 px panel: range / 1440, at least 15)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", help="keep the generated data here (reused when the parameters match)")
    args = p.parse_args(argv)
    from tests.servers.prometheus import Prometheus

    range_ms = int(args.hours * HOUR_MS)
    step_ms = int(args.step * 1000) if args.step else max(od.SCRAPE_MS, range_ms // DEFAULT_WIDTH_PX)
    requests = dashboard_requests(step_ms, range_ms)
    with tempfile.TemporaryDirectory(prefix="rh-promql-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        info = prepare(work, args.nodes, args.hours, args.seed, [e for _, e, _ in requests])
        prom = Prometheus(work / "prometheus")
        ours_proc = None
        try:
            say("starting Prometheus and the history server")
            prom.start()
            ours_proc, ours_url = start_ours(work, info["session_id"])
            import httpx

            clients = {"prom": prom.client, "ours": httpx.Client(base_url=ours_url, timeout=600.0)}
            start_s, end_s = info["start_ms"] / 1000, info["end_ms"] / 1000
            passes: dict[str, dict[str, list]] = {"prom": {}, "ours": {}}
            for kind in ("cold", "warm"):
                for side in ("prom", "ours"):
                    t = time.monotonic()
                    passes[side][kind] = run_pass(clients[side], requests, start_s, end_s, step_ms / 1000)
                    say(f"{side} {kind} pass: {time.monotonic() - t:.2f} s")
            rss = {"ours": peak_rss_mib(ours_proc.pid), "prom": peak_rss_mib(prom.proc.pid)}
            clients["ours"].close()
        finally:
            if ours_proc is not None:
                ours_proc.terminate()
                ours_proc.wait(timeout=30)
            prom.stop()
    agree = 0
    notes = []
    for i, (title, _, _) in enumerate(requests):
        d = differs(passes["ours"]["warm"][i][1], passes["prom"]["warm"][i][1])
        if d is None:
            agree += 1
        else:
            notes.append(f"{title}: {d[:300]}")
    points = sum(
        len(r.get("values", ()))
        for _, body, _ in passes["prom"]["warm"]
        for r in (json.loads(body).get("data") or {}).get("result", [])
        if isinstance(r, dict)
    )
    print(
        f"Session: {args.nodes} nodes, {args.hours:g} h, 15 s scrapes: {info['series']:,} series, "
        f"{info['samples']:,} samples ({info['parquet_mb']:,.0f} MB of Parquet; Prometheus blocks "
        f"{info['tsdb_mb']:,.0f} MB). {len(requests)} Default-dashboard targets as range queries over the whole "
        f"range at a {step_ms / 1000:g} s step ({points:,} points returned). {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}.\n"
    )
    cmd = f".venv/bin/python -m benchmarks.promql_dashboard --nodes {args.nodes} --hours {args.hours:g}"
    print(f"Reproduce: `{cmd}{f' --step {args.step:g}' if args.step else ''}`\n")
    print(table(info, args, requests, passes, rss, agree))
    for n in notes:
        print(f"\nWARNING: answer differs from Prometheus's: {n}")
    ratio = sum(t for t, _, _ in passes["ours"]["warm"]) / sum(t for t, _, _ in passes["prom"]["warm"])
    problems = [f"answer differs from Prometheus's: {n}" for n in notes]
    if ratio > RATIO_TARGET:
        problems.append(f"FAIL: the warm pass took {ratio:.2f}x Prometheus's time (target <= {RATIO_TARGET:g}x)")
    verdict = rss_verdict(rss)
    if verdict.startswith("FAIL"):
        problems.append(f"FAIL: the server's peak RSS against Prometheus's: {verdict} (target <= {RSS_TARGET:g}x)")
    return exit_status(problems, "benchmarks.promql_dashboard")


if __name__ == "__main__":
    sys.exit(main())
