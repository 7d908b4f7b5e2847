"""Ray's Default Grafana dashboard over a day of a 50-node session: every panel through our Prometheus API, side by
side with a real Prometheus 2.42 holding the same samples, in one run (issue 5; target: at most 2x Prometheus).

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
  process (uvicorn on 127.0.0.1, as `rayhistory serve` runs it) and reads them as it reads any compacted session;
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
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archive.compacted import INFO_FILE, METRIC_SAMPLES, METRIC_SERIES
from benchmarks.outcome import exit_status
from tests import oracle_data as od

HOUR_MS = 3_600_000
DASHBOARD = "default_grafana_dashboard.json"
DEFAULT_WIDTH_PX = 1440
RATIO_TARGET = 2.0
REL_TOL = 1e-6


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the session --------------------------------------------------------------------------------------------------


def make_session(nodes: int, hours: float, seed: int) -> od.Session:
    """A head and nodes-1 workers; a quarter of the workers join late or leave early (autoscaling)."""
    end = od.T0_MS + int(hours * HOUR_MS)
    r = np.random.default_rng(seed)
    out = []
    for i in range(nodes):
        start, stop = od.T0_MS, end
        u = r.random()
        if i and u < 0.15:
            start += int(r.uniform(0.1, 0.5) * (end - od.T0_MS))
        elif i and u < 0.25:
            stop -= int(r.uniform(0.1, 0.5) * (end - od.T0_MS))
        out.append(
            od.Node(
                f"{i + 1:056x}",
                f"10.0.{i // 250}.{i % 250 + 1}",
                i == 0,
                start,
                stop,
                0 if i == 0 else (i * 1_237) % od.SCRAPE_MS,
                0 if i % 3 == 0 else 40,
            )
        )
    return od.Session(f"session_2025-11-20_00-00-00_000000_{seed}", tuple(out))


def dashboard_requests(step_ms: int, range_ms: int) -> list[tuple[str, str, bool]]:
    """(panel title and refId, expression as Grafana sends it, instant?) of every Default dashboard target."""
    from tests.promql_panels import GrafanaRequest, interpolate, load_dashboards

    dash = next(d for d in load_dashboards() if d.file == DASHBOARD)
    req = GrafanaRequest({}, interval_ms=step_ms, range_ms=range_ms)
    return [(f"{t.title} ({t.ref_id})", interpolate(t.expr, dash, req), t.instant) for t in dash.targets]


@dataclass
class Series:
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted, with the target's labels
    ts: np.ndarray
    values: np.ndarray


def generate(session: od.Session, exprs: list[str]) -> list[Series]:
    """Every series of the session, sorted by (name, labels): the order the compaction numbers them in."""
    fams = od.families(od.referenced_metrics(exprs))
    per_target: dict[str, list] = {}
    for fam in fams:
        for ent in od._entities(fam, session):
            per_target.setdefault(ent.target, []).append((fam, ent))
    out: dict[tuple, Series] = {}
    for node in session.nodes:
        for port in (od.NODE_PORT, od.AUTOSCALER_PORT) if node.is_head else (od.NODE_PORT,):
            target = f"{node.ip}:{port}"
            ts = od.scrape_times(node, port)
            ok = ~od.failed_scrapes(node, port, len(ts))
            tl = (("instance", target), ("job", od.JOB), ("ray_io_cluster", od.CLUSTER))
            scraped = np.zeros(len(ts))
            for fam, ent in per_target.get(target, []):
                alive = ok & (ts >= ent.birth_ms) & (ts < ent.death_ms)
                for name, labels, values in od.family_samples(fam, ent, ts):
                    key = (name, tuple(sorted(labels + tl)))
                    out[key] = Series(*key, ts[alive], values[alive])
                    scraped += alive
            # The scrape's own families, as Prometheus writes them for every target.
            for name, values in (
                ("up", ok.astype(float)),
                ("scrape_duration_seconds", 0.004 + (np.arange(len(ts)) % 7) * 0.001),
                ("scrape_samples_scraped", scraped),
            ):
                out[(name, tl)] = Series(name, tl, ts, values)
    return [out[k] for k in sorted(out)]


def write_tables(series: list[Series], tables: Path) -> None:
    """metric_series and metric_samples exactly as historyserver/compaction/metrics.py writes them."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = np.arange(len(series), dtype=np.int64)
    pq.write_table(
        pa.Table.from_arrays(
            [
                pa.array(ids, pa.int64()),
                pa.array([s.name for s in series], pa.string()),
                pa.array([list(s.labels) for s in series], METRIC_SERIES.schema.field("labels").type),
            ],
            schema=METRIC_SERIES.schema,
        ),
        tables / METRIC_SERIES.file,
        compression="zstd",
    )
    samples = pa.Table.from_arrays(
        [
            pa.array(np.repeat(ids, [len(s.ts) for s in series])),
            pa.array(np.concatenate([s.ts for s in series])),
            pa.array(np.concatenate([s.values for s in series])),
        ],
        schema=METRIC_SAMPLES.schema,
    )
    con = duckdb.connect(":memory:")
    try:
        con.register("staged", samples)
        dst = str(tables / METRIC_SAMPLES.file).replace("'", "''")
        con.execute(f"COPY (SELECT series_id, ts_ms, value FROM staged) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)")
    finally:
        con.close()


def register(session: od.Session, archive: Path, cache_dir: Path, series: list[Series]) -> str:
    """The session in an archive (manifest, index entry, node records) and its compacted tables in the Warehouse's
    cache, marked closed, so that the server opens them as it opens any session it compacted before."""
    from archive.layout import SessionRef
    from archive.manifest import ENDED, NodeRecord, SessionManifest
    from archive.storage.local import LocalStore
    from historyserver.compaction.build import compact
    from historyserver.warehouse import Warehouse

    store = LocalStore(archive)
    ref = SessionRef(od.NAMESPACE, od.CLUSTER, session.name)
    end_ms = max(n.end_ms for n in session.nodes)
    records = [
        NodeRecord(n.node_id, is_head=n.is_head, ip=n.ip, start_ms=n.start_ms, end_ms=n.end_ms) for n in session.nodes
    ]
    for rec in records:
        store.put(ref.node(rec.node_id).node_key, rec.to_json())
    m = SessionManifest(
        namespace=od.NAMESPACE,
        cluster=od.CLUSTER,
        session_name=session.name,
        ray_version=od.VERSION,
        start_ms=od.T0_MS,
        end_ms=end_ms,
        status=ENDED,
        last_seen_ms=end_ms,
        nodes=records,
    )
    store.put(ref.manifest_key, m.to_json())
    store.put(ref.index_key, m.to_json())
    tables = Warehouse(store, cache_dir).root / ref.id
    info = compact(store, ref, tables, end_ms)  # the other tables (empty: no events archived), as the server would
    write_tables(series, tables)
    counts = {
        **info.get("counts", {}),
        "metric_series": len(series),
        "metric_samples": int(sum(len(s.ts) for s in series)),
    }
    (tables / INFO_FILE).write_text(json.dumps({**info, "counts": counts, "closed": True}, indent=1))
    return ref.id


def write_openmetrics(series: list[Series], path: Path) -> None:
    with open(path, "w") as f:
        last = None
        for s in series:
            if s.name != last:
                f.write(f"# TYPE {s.name} gauge\n")
                last = s.name
            line = (s.name + "{" + od._labels(s.labels) + "}").replace("{", "{{").replace("}", "}}") + " {!r} {}\n"
            stamps = [f"{t // 1000}.{t % 1000:03d}" for t in s.ts.tolist()]
            f.write("".join(map(line.format, s.values.tolist(), stamps)))
        f.write("# EOF\n")


def backfill(om: Path, data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--quiet",
            "--max-block-duration=24h",
            str(om),
            str(data),
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"promtool failed: {(r.stderr or r.stdout)[-2000:]}")


def prepare(work: Path, nodes: int, hours: float, seed: int, exprs: list[str]) -> dict[str, Any]:
    """Generate (or reuse) everything under `work`; returns what the run needs to know about the data."""
    params = {"nodes": nodes, "hours": hours, "seed": seed, "v": 1}
    done = work / "dataset.json"
    if done.exists() and json.loads(done.read_text()).get("params") == params:
        say(f"reusing the data in {work}")
        return json.loads(done.read_text())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    session = make_session(nodes, hours, seed)
    t = time.monotonic()
    series = generate(session, exprs)
    samples = int(sum(len(s.ts) for s in series))
    say(f"generated {len(series):,} series, {samples:,} samples ({time.monotonic() - t:.0f} s)")
    t = time.monotonic()
    session_id = register(session, work / "archive", work / "cache", series)
    say(f"archive and compacted tables written ({time.monotonic() - t:.0f} s)")
    t = time.monotonic()
    om = work / "data.om"
    write_openmetrics(series, om)
    del series
    say(f"OpenMetrics written: {om.stat().st_size / 1e9:.1f} GB ({time.monotonic() - t:.0f} s); backfilling")
    t = time.monotonic()
    backfill(om, work / "prometheus" / "data")
    om.unlink()
    say(f"promtool backfill done ({time.monotonic() - t:.0f} s)")
    info: dict[str, Any] = {"params": params, "session_id": session_id}
    tables = next((work / "cache").glob("compacted-c*")) / session_id
    counts = json.loads((tables / INFO_FILE).read_text())["counts"]
    info.update(
        series=counts["metric_series"],
        samples=counts["metric_samples"],
        parquet_mb=round(sum((tables / t.file).stat().st_size for t in (METRIC_SERIES, METRIC_SAMPLES)) / 1e6, 1),
        tsdb_mb=round(sum(p.stat().st_size for p in (work / "prometheus" / "data").rglob("*") if p.is_file()) / 1e6, 1),
        start_ms=od.T0_MS,
        end_ms=od.T0_MS + int(hours * HOUR_MS),
    )
    done.write_text(json.dumps(info))
    return info


# --- the servers --------------------------------------------------------------------------------------------------


def child_serve(archive: str, cache_dir: str, port: int) -> None:
    from archive.storage import open_store
    from historyserver.cli import serve
    from historyserver.settings import ServerSettings

    settings = ServerSettings(archive=archive, cache_dir=cache_dir, port=port, compact_on_end=False, grafana_url="")
    serve(settings, open_store(archive))


def start_ours(work: Path, session_id: str):
    import httpx

    from tests.servers.prometheus import _free_port

    port = _free_port()
    log = open(work / "historyserver.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.promql_dashboard",
            "--child-serve",
            str(work / "archive"),
            str(work / "cache"),
            str(port),
        ],
        cwd=Path(__file__).resolve().parent.parent,
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
    lines.append(f"| peak RSS of the server process | {fmt(rss['ours'])} | {fmt(rss['prom'])} | |")
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
    p.add_argument("--child-serve", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_serve:
        child_serve(args.child_serve[0], args.child_serve[1], int(args.child_serve[2]))
        return 0
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
    return exit_status(problems, "benchmarks.promql_dashboard")


if __name__ == "__main__":
    sys.exit(main())
