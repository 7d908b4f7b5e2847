"""The data of benchmarks/promql_dashboard.py: a session of N nodes over H hours generated with tests/oracle_data.py's
models of Ray's series, written two ways with the same samples: our compacted tables (Parquet in the compaction's
schema, in the Warehouse's cache, for a session registered in an archive) and one OpenMetrics file backfilled into
Prometheus's blocks with promtool. `prepare` builds both once per parameters and reuses them from the workdir."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archive.compacted import INFO_FILE, METRIC_SAMPLES, METRIC_SERIES
from tests import oracle_data as od

HOUR_MS = 3_600_000


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
