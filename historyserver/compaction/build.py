"""Compaction: one session's archived events turned into query-ready Parquet tables.

The tables are a versioned, throw-away cache (COMPACTION_VERSION): a new version rebuilds them, never migrates.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from archive import logs as archive_logs
from archive.errors import NotFound
from archive.layout import SessionRef
from archive.manifest import NodeRecord
from archive.storage import Store
from historyserver.compaction.export_events import Folded, fold_lines
from historyserver.compaction.records import TASK_SUMMARY_KEYS, actor_record, job_records, node_record, task_record

log = logging.getLogger("rayhistory.compaction")

COMPACTION_VERSION = 1
EXPORT_DIR = "export_events/"
_WORKER_LOG = re.compile(r"^worker-([0-9a-f]+)-[0-9a-f]+-\d+\.(out|err)$")

TABLES = ("tasks", "actors", "jobs", "nodes", "log_files")


def _read_node_record(store: Store, ref: SessionRef, node_id: str) -> NodeRecord:
    try:
        return NodeRecord.from_json(store.get(ref.node(node_id).node_key))
    except NotFound:
        return NodeRecord(node_id=node_id)


def compact(store: Store, ref: SessionRef, out_dir: Path, session_end_ms: int | None) -> dict[str, Any]:
    """Build every table of the session into out_dir (atomically: a temp dir renamed into place)."""
    started = time.monotonic()
    folded = Folded()
    log_rows: list[dict[str, Any]] = []
    node_records: dict[str, NodeRecord] = {}
    for node_id in store.list_dirs(ref.nodes_prefix):
        node = ref.node(node_id)
        node_records[node_id] = _read_node_record(store, ref, node_id)
        for path, segs in archive_logs.list_segments(store, node).items():
            run = archive_logs.covering(segs)
            log_rows.append({
                "node_id": node_id,
                "path": path,
                "size": run[-1].end if run else 0,
                "segments": len(segs),
                "complete": bool(run) and len(run) == len([s for s in segs if s.epoch == run[0].epoch]),
            })
            if not path.startswith(EXPORT_DIR) or not path.split("/")[-1].startswith("event_EXPORT_"):
                continue
            for epoch in sorted({s.epoch for s in segs}):
                data = b"".join(archive_logs.read_segment(store, node, s) for s in archive_logs.covering(segs, epoch))
                if not data.endswith(b"\n"):
                    data = data[: data.rfind(b"\n") + 1]  # a line still being written
                fold_lines(data.splitlines(), f"{node_id[:12]}:{path}", folded)

    worker_logs = _worker_logs(log_rows, node_records)
    nodes_ip = {n: r.ip for n, r in node_records.items() if r.ip}
    nodes_ip.update({k: v.get("node_manager_address") for k, v in folded.nodes.items() if v.get("node_manager_address")})

    tasks = [task_record(t, worker_logs) for t in folded.tasks.values()]
    actors = [actor_record(a, nodes_ip, session_end_ms) for a in folded.actors.values()]
    jobs = job_records(folded)
    nodes = [node_record(n) for n in folded.nodes.values()]

    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    try:
        _write(tmp / "tasks.parquet", [
            {**{k: t[k] for k in TASK_SUMMARY_KEYS}, "creation_time_ms": t["creation_time_ms"],
             "start_time_ms": t["start_time_ms"], "end_time_ms": t["end_time_ms"], "record": json.dumps(t)} for t in tasks
        ], TASK_SCHEMA)
        _write(tmp / "actors.parquet", [
            {"actor_id": a["actorId"], "job_id": a["jobId"], "state": a["state"], "class_name": a["className"],
             "name": a["name"], "node_id": a["address"]["nodeId"], "pid": a["pid"], "record": json.dumps(a)}
            for a in actors
        ], ACTOR_SCHEMA)
        _write(tmp / "jobs.parquet", [
            {"job_id": j["job_id"], "submission_id": j["submission_id"], "type": j["type"], "status": j["status"],
             "start_time": j["start_time"], "record": json.dumps(j)} for j in jobs
        ], JOB_SCHEMA)
        _write(tmp / "nodes.parquet", [
            {"node_id": n["node_id"], "state": n["state"], "is_head_node": n["is_head_node"], "node_ip": n["node_ip"],
             "record": json.dumps(n)} for n in nodes
        ], NODE_SCHEMA)
        _write(tmp / "log_files.parquet", log_rows, LOG_SCHEMA)
        info = {
            "compaction_version": COMPACTION_VERSION,
            "session_id": ref.id,
            "built_at_ms": int(time.time() * 1000),
            "seconds": round(time.monotonic() - started, 3),
            "counts": {"tasks": len(tasks), "actors": len(actors), "jobs": len(jobs), "nodes": len(nodes),
                       "log_files": len(log_rows)},
            "damage": asdict(folded.damage),
            "archived_nodes": {n: asdict(r) for n, r in node_records.items()},
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
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


def _write(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")


_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
TASK_SCHEMA = pa.schema([
    ("task_id", _S), ("attempt_number", _I), ("name", _S), ("state", _S), ("job_id", _S), ("actor_id", _S),
    ("type", _S), ("func_or_class_name", _S), ("parent_task_id", _S), ("node_id", _S), ("worker_id", _S),
    ("worker_pid", _I), ("error_type", _S), ("creation_time_ms", _F), ("start_time_ms", _F), ("end_time_ms", _F),
    ("record", _S),
])
ACTOR_SCHEMA = pa.schema([
    ("actor_id", _S), ("job_id", _S), ("state", _S), ("class_name", _S), ("name", _S), ("node_id", _S),
    ("pid", _I), ("record", _S),
])
JOB_SCHEMA = pa.schema([
    ("job_id", _S), ("submission_id", _S), ("type", _S), ("status", _S), ("start_time", _I), ("record", _S),
])
NODE_SCHEMA = pa.schema([("node_id", _S), ("state", _S), ("is_head_node", _B), ("node_ip", _S), ("record", _S)])
LOG_SCHEMA = pa.schema([("node_id", _S), ("path", _S), ("size", _I), ("segments", _I), ("complete", _B)])
