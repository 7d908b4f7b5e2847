"""Compaction: one session's archived events turned into query-ready Parquet tables.

The tables are a versioned, throw-away cache (COMPACTION_VERSION): a new version rebuilds them, never migrates.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from archive import api_snapshots as snapshot_format, logs as archive_logs
from archive.api_snapshots import CLUSTER_STATUS_ROUTES, Snapshot
from archive.compacted import (ACTORS, CLUSTER_EVENTS, COMPACTION_VERSION, INFO_FILE, JOBS, LOG_FILES, NODES,
                               PLACEMENT_GROUPS, TASKS, WORKERS, Table)
from archive.errors import NotFound
from archive.layout import SessionRef
from archive.manifest import NodeRecord
from archive.storage import Store
from historyserver.compaction import api_snapshots, ray_events
from historyserver.compaction.cluster_events import event_rows as cluster_event_rows, is_cluster_events_file
from historyserver.compaction.export_events import Folded, fold_lines
from historyserver.compaction.metrics import compact_metrics
from historyserver.compaction.placement_groups import placement_group_rows
from historyserver.compaction.records import actor_record, job_records, node_record
from historyserver.compaction.tasks_sql import fold_tasks
from historyserver.compaction.workers import build_workers

log = logging.getLogger("rayhistory.compaction")

EXPORT_DIR = "export_events/"
_WORKER_LOG = re.compile(r"^worker-([0-9a-f]+)-[0-9a-f]+-\d+\.(out|err)$")



def _read_node_record(store: Store, ref: SessionRef, node_id: str) -> NodeRecord:
    try:
        return NodeRecord.from_json(store.get(ref.node(node_id).node_key))
    except NotFound:
        return NodeRecord(node_id=node_id)


def _stage(store: Store, node, segs, out: Path | None, damage, where: str) -> tuple[bytes | None, int]:
    """The file's complete lines, from its segments (every generation, oldest first): written to `out` (for
    DuckDB) segment by segment, so a large file never sits in memory, or returned when `out` is None.
    A segment that cannot be read ends its generation there; returns (data or None, number of lines)."""
    sink = io.BytesIO() if out is None else _open_staged(out)
    lines, tail = 0, b""  # tail: the bytes after the last newline written so far
    with sink:
        newest = max(s.epoch for s in segs)
        for epoch in sorted({s.epoch for s in segs}):
            run = archive_logs.covering(segs, epoch)
            for chunk in _prefetched(store, node, run, damage, where):
                sink.write(chunk)
                lines += chunk.count(b"\n")
                cut = chunk.rfind(b"\n")
                tail = tail + chunk if cut < 0 else chunk[cut + 1:]
            if epoch != newest and tail:
                sink.write(b"\n")  # an old generation's last line, cut off by rotation, stays one (bad) line
                lines, tail = lines + 1, b""
        # The newest generation's last line may still be being written: it waits for the next compaction.
        sink.seek(sink.tell() - len(tail))
        sink.truncate()
        data = sink.getvalue() if out is None else None
    return data, lines


def _prefetched(store: Store, node, run, damage, where: str, window: int = 4):
    """The run's segments decompressed, in order, fetched a few ahead in threads (never all at once: memory)."""
    with ThreadPoolExecutor(max_workers=window) as pool:
        pending = deque(pool.submit(archive_logs.read_segment, store, node, s) for s in run[:window])
        following = iter(run[window:])
        while pending:
            try:
                chunk = pending.popleft().result()
            except archive_logs.CorruptSegment as e:
                damage.note(where, str(e))
                for fut in pending:
                    fut.cancel()
                return
            nxt = next(following, None)
            if nxt is not None:
                pending.append(pool.submit(archive_logs.read_segment, store, node, nxt))
            yield chunk


def _open_staged(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w+b")


def compact(store: Store, ref: SessionRef, out_dir: Path, session_end_ms: int | None) -> dict[str, Any]:
    """Build every table of the session into out_dir (atomically: a temp dir renamed into place)."""
    started = time.monotonic()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    folded = Folded()
    log_rows: list[dict[str, Any]] = []
    node_records: dict[str, NodeRecord] = {}
    task_files: list[Path] = []
    task_lines = 0
    event_rows: list[dict[str, Any]] = []
    seen_events: set[str] = set()
    http_events: list[dict[str, Any]] = []  # non-task events of Ray's HTTP path, folded once all nodes are read
    api_latest: dict[str, Snapshot] = {}  # route -> the newest snapshot of the head's dashboard API
    try:
        for node_id in store.list_dirs(ref.nodes_prefix):
            node = ref.node(node_id)
            node_records[node_id] = _read_node_record(store, ref, node_id)
            listed = archive_logs.list_segments(store, node)
            for path, (archived_path, epoch) in archive_logs.read_renames(store, node).items():
                gen = [s for s in listed.get(archived_path, []) if s.epoch == epoch]
                if gen and path not in listed:
                    log_rows.append(_log_row(node_id, path, gen))  # a rotated file, under its current name
            for path, segs in listed.items():
                log_rows.append(_log_row(node_id, path, [s for s in segs if s.epoch == max(x.epoch for x in segs)],
                                         len(segs)))
                name = path.split("/")[-1]
                where = f"{node_id[:12]}:{path}"
                if is_cluster_events_file(path):
                    data, _ = _stage(store, node, segs, None, folded.damage, where)
                    event_rows += cluster_event_rows(data.splitlines(), seen_events)
                    continue
                if not path.startswith(EXPORT_DIR) or not name.startswith("event_EXPORT_"):
                    continue
                if name.startswith("event_EXPORT_TASK"):
                    staged = tmp / "stage" / node_id / path
                    task_lines += _stage(store, node, segs, staged, folded.damage, where)[1]
                    task_files.append(staged)
                else:
                    data, _ = _stage(store, node, segs, None, folded.damage, where)
                    fold_lines(data.splitlines(), where, folded)
            # Ray's HTTP event path (ray_events.py): RayEvents become export-event lines for the same folds.
            for path, segs in archive_logs.list_segments(store, node, source="ray_events").items():
                where = f"{node_id[:12]}:ray_events/{path}"
                raw = tmp / "stage" / node_id / "ray_events.raw" / path
                _stage(store, node, segs, raw, folded.damage, where)
                staged = tmp / "stage" / node_id / "ray_events" / path
                with raw.open("rb") as lines:
                    task_lines += ray_events.normalize_spool(lines, where, folded.damage, staged, http_events)
                task_files.append(staged)
            # The head's snapshots of Ray's dashboard API: what no event stream carries.
            for path, segs in archive_logs.list_segments(store, node, source=snapshot_format.SOURCE).items():
                where = f"{node_id[:12]}:api/{path}"
                data, _ = _stage(store, node, segs, None, folded.damage, where)
                for route, snap in api_snapshots.latest_by_route(data.splitlines(), folded.damage, where).items():
                    if route not in api_latest or snap.time_ms >= api_latest[route].time_ms:
                        api_latest[route] = snap
        ray_events.fold_ray_events(http_events, folded)
        metric_counts = compact_metrics(store, ref, list(node_records), tmp, folded.damage)
        # Placement groups: from the HTTP path when Ray emits them (fold_ray_events left them aside), else from
        # the last snapshot of the head's API (Ray 2.60 emits none).
        placement_groups = placement_group_rows(http_events, folded.damage, session_end_ms) or \
            api_snapshots.placement_group_rows(api_latest, session_end_ms)

        staged_mb = sum(p.stat().st_size for p in task_files) / 2**20
        log.info("%s: staged %d task event files (%.0f MiB) in %.1fs", ref.id, len(task_files), staged_mb,
                 time.monotonic() - started)
        worker_logs = _worker_logs(log_rows, node_records)
        nodes_ip = {n: r.ip for n, r in node_records.items() if r.ip}
        nodes_ip.update({k: v.get("node_manager_address") for k, v in folded.nodes.items()
                         if v.get("node_manager_address")})
        actors = [actor_record(a, nodes_ip, session_end_ms) for a in folded.actors.values()]
        jobs = job_records(folded, session_end_ms)
        nodes = [node_record(n) for n in folded.nodes.values()]

        con = _duckdb(tmp)
        con.register("worker_logs", pa.Table.from_pylist(
            [{"node_id": n, "worker_id": w, "out_file": o, "err_file": e} for (n, w), (o, e) in worker_logs.items()],
            schema=pa.schema([(c, pa.string()) for c in ("node_id", "worker_id", "out_file", "err_file")])))
        fold_started = time.monotonic()
        task_counts = fold_tasks(con, task_files, tmp, session_end_ms)
        drivers = [{"job_id": j["job_id"], "pid": int(j["driver_info"]["pid"]) if j["driver_info"]["pid"] else None,
                    "ip": j["driver_info"]["node_ip_address"], "start": j["start_time"], "end": j["end_time"]}
                   for j in jobs if j["job_id"] and j["driver_info"]]
        workers = build_workers(con, tmp / TASKS.file, log_rows, drivers, nodes_ip, session_end_ms is not None)
        con.close()
        log.info("%s: folded %d task attempts in %.1fs", ref.id, task_counts["tasks"], time.monotonic() - fold_started)
        if task_lines > task_counts["task_events"]:
            unread = task_lines - task_counts["task_events"]
            folded.damage.note("export_events/event_EXPORT_TASK_*", f"{unread} unreadable task event line(s)", unread)
        shutil.rmtree(tmp / "stage", ignore_errors=True)

        _write(tmp, ACTORS, [
            {"actor_id": a["actorId"], "job_id": a["jobId"], "state": a["state"], "class_name": a["className"],
             "name": a["name"], "node_id": a["address"]["nodeId"], "pid": a["pid"], "record": json.dumps(a)}
            for a in actors
        ])
        _write(tmp, JOBS, [
            {"job_id": j["job_id"], "submission_id": j["submission_id"], "type": j["type"], "status": j["status"],
             "start_time": j["start_time"], "record": json.dumps(j)} for j in jobs
        ])
        _write(tmp, NODES, [
            {"node_id": n["node_id"], "state": n["state"], "is_head_node": n["is_head_node"], "node_ip": n["node_ip"],
             "record": json.dumps(n)} for n in nodes
        ])
        _write(tmp, LOG_FILES, log_rows)
        _write(tmp, WORKERS, [
            {"worker_id": w["worker_id"], "node_id": w["node_id"], "pid": w["pid"], "worker_type": w["worker_type"],
             "record": json.dumps(w)} for w in workers
        ])
        _write(tmp, CLUSTER_EVENTS, sorted(event_rows, key=lambda r: r["timestamp"]))
        _write(tmp, PLACEMENT_GROUPS, placement_groups)  # empty: still written
        info = {
            "compaction_version": COMPACTION_VERSION,
            "session_id": ref.id,
            "built_at_ms": int(time.time() * 1000),
            "seconds": round(time.monotonic() - started, 3),
            "counts": {"tasks": task_counts["tasks"], "failed_tasks": task_counts["failed_tasks"],
                       "actors": len(actors), "jobs": len(jobs), "nodes": len(nodes), "log_files": len(log_rows),
                       "cluster_events": len(event_rows), "workers": len(workers), **metric_counts,
                       "placement_groups": len(placement_groups)},
            "damage": asdict(folded.damage),
            # The autoscaler's last word on the cluster, as Ray's /api/cluster_status answered it.
            "cluster_status": {r: {"time_ms": api_latest[r].time_ms, "body": api_latest[r].body}
                               for r in CLUSTER_STATUS_ROUTES if r in api_latest},
            "archived_nodes": {n: asdict(r) for n, r in node_records.items()},
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1))
        old = None
        if out_dir.exists():
            old = out_dir.with_name(out_dir.name + f".old-{os.getpid()}-{time.monotonic_ns()}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("compacted %s in %.2fs: %s", ref.id, info["seconds"], info["counts"])
    return info


def _duckdb(tmp: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    # Bounded memory: large sessions spill to disk instead of growing the server's RSS.
    con.execute(f"SET memory_limit = '{os.environ.get('RAYHISTORY_COMPACTION_MEMORY', '600MB')}'")
    con.execute(f"SET temp_directory = '{tmp / 'spill'}'")
    con.execute("SET preserve_insertion_order = false")
    return con


def _log_row(node_id: str, path: str, generation: list, segment_count: int | None = None) -> dict[str, Any]:
    run = archive_logs.covering(generation)
    return {"node_id": node_id, "path": path, "size": run[-1].end if run else 0,
            "segments": segment_count or len(generation), "complete": bool(run) and len(run) == len(generation)}


def _worker_logs(log_rows: list[dict[str, Any]], nodes: dict[str, NodeRecord]) -> dict[tuple[str, str], tuple[str, str]]:
    """(node, worker) -> full paths of its .out/.err, as Ray's task_log_info names them."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for row in log_rows:
        m = _WORKER_LOG.match(row["path"])
        if not m:
            continue
        base = nodes.get(row["node_id"])
        prefix = f"{base.session_dir}/logs/" if base and base.session_dir else ""
        found.setdefault((row["node_id"], m.group(1)), {})[m.group(2)] = prefix + row["path"]
    return {k: (v.get("out"), v.get("err")) for k, v in found.items()}


def _write(out_dir: Path, table: Table, rows: list[dict[str, Any]]) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out_dir / table.file, compression="zstd")
