"""The builders of the compacted tables: each table of archive/compacted.py's registry, bound to what writes it.

compact() (build.py) reads the session's archive once into `Inputs`, then runs BUILDERS in order; each writes its
tables into the build directory and returns its counts for info.json. A new table (a search index, say) is a
Table in archive/compacted.py and a Builder here. Builders run in the order listed: that order is the order in
which damage is noted, and a builder that reads another's table (`reads`) comes after it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from archive.api_snapshots import Snapshot
from archive.compacted import (
    ACTORS,
    CLUSTER_EVENTS,
    FILES,
    JOBS,
    LOG_FILES,
    LOG_LINES,
    LOG_TERMS,
    METRIC_SAMPLES,
    METRIC_SERIES,
    NODES,
    PLACEMENT_GROUPS,
    PROFILE_EVENTS,
    TABLES,
    TASK_TIMELINE,
    TASKS,
    WORKERS,
    Table,
    table_files,
)
from archive.layout import SessionRef
from archive.manifest import NodeRecord
from archive.storage import Store
from historyserver.compaction import api_snapshots, log_tables, staging
from historyserver.compaction.export_events import Folded
from historyserver.compaction.ids import ms
from historyserver.compaction.metrics import compact_metrics
from historyserver.compaction.placement_groups import placement_group_rows
from historyserver.compaction.records import actor_record, job_records, node_record
from historyserver.compaction.task_timeline import build_task_timeline
from historyserver.compaction.tasks_sql import fold_tasks
from historyserver.compaction.workers import build_workers

log = logging.getLogger("rayhistory.compaction")
_WORKER_LOG = re.compile(r"^worker-([0-9a-f]+)-[0-9a-f]+-\d+\.(out|err)$")


DEFAULT_MEMORY = "600MB"  # DuckDB's memory while compacting one session, unless --compaction-memory says


@dataclass
class Inputs:
    """What one pass over the session's archive gathered for the builders (build.py's reading pass)."""

    store: Store
    ref: SessionRef
    tmp: Path  # the build directory: tables are written here, staged files under tmp / "stage"
    session_end_ms: int | None
    memory_limit: str = DEFAULT_MEMORY  # DuckDB's while compacting (--compaction-memory)
    previous: Path | None = (
        None  # the session's last build (being replaced): its log tables are reused if no log changed
    )
    folded: Folded = field(default_factory=Folded)
    node_records: dict[str, NodeRecord] = field(default_factory=dict)
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    task_files: list[Path] = field(default_factory=list)  # staged EXPORT_TASK lines, for DuckDB (add_task_file)
    task_bytes: int = 0  # their lines' bytes, uncompressed
    task_sources: dict[Path, staging.Source] = field(default_factory=dict)  # the files staged as gzip members
    event_rows: list[dict[str, Any]] = field(default_factory=list)
    seen_events: set[str] = field(default_factory=set)
    http_events: list[dict[str, Any]] = field(default_factory=list)  # non-task events of Ray's HTTP path
    api_latest: dict[str, Snapshot] = field(default_factory=dict)  # route -> the head's newest API snapshot
    files: dict[str, list[str]] = field(default_factory=dict)  # table -> its parts, for a table written as several
    _con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = duckdb_for_compaction(self.tmp, self.memory_limit)
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def add_task_file(self, path: Path, size: int | None = None, source: staging.Source | None = None) -> None:
        """A staged file of task events: decompressed (its size is its own), or gzip members of `size` bytes of
        lines staged from `source`."""
        self.task_files.append(path)
        self.task_bytes += path.stat().st_size if size is None else size
        if source is not None:
            self.task_sources[path] = source

    def paths(self, table: Table) -> list[Path]:
        """The files a builder wrote for the table (one, or its parts), for a later builder that reads it."""
        return [self.tmp / name for name in table_files({FILES: self.files}, table)]

    @cached_property
    def nodes_ip(self) -> dict[str, str]:
        ips = {n: r.ip for n, r in self.node_records.items() if r.ip}
        ips.update(
            {k: v.get("node_manager_address") for k, v in self.folded.nodes.items() if v.get("node_manager_address")}
        )
        return ips

    @cached_property
    def jobs(self) -> list[dict[str, Any]]:
        return job_records(self.folded, self.session_end_ms)


@dataclass(frozen=True)
class Builder:
    tables: tuple[Table, ...]  # what it writes
    build: Callable[[Inputs], dict[str, int]]  # writes them into inputs.tmp; returns counts for info.json
    reads: tuple[Table, ...] = ()  # tables of earlier builders it reads


def duckdb_for_compaction(tmp: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """Bounded memory: large sessions spill to tmp/spill instead of growing the server's RSS."""
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "temp_directory": str(tmp / "spill")})
    con.execute("SET preserve_insertion_order = false")
    return con


def _write(inputs: Inputs, table: Table, rows: list[dict[str, Any]]) -> dict[str, int]:
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), inputs.tmp / table.file, compression="zstd")
    return {table.name: len(rows)}


# --- the builders ------------------------------------------------------------------------------------------------


def _metrics(inputs: Inputs) -> dict[str, int]:
    return compact_metrics(
        inputs.store, inputs.ref, list(inputs.node_records), inputs.tmp, inputs.folded.damage, inputs.memory_limit
    )


def _placement_groups(inputs: Inputs) -> dict[str, int]:
    # From the HTTP path when Ray emits them (fold_ray_events left them aside), else from the last snapshot of the
    # head's API (Ray 2.60 emits none). Empty: still written.
    return _write(
        inputs,
        PLACEMENT_GROUPS,
        placement_group_rows(inputs.http_events, inputs.folded.damage, inputs.session_end_ms)
        or api_snapshots.placement_group_rows(inputs.api_latest, inputs.session_end_ms),
    )


def _tasks(inputs: Inputs) -> dict[str, int]:
    """tasks and profile_events, folded in DuckDB from the staged task events (then dropped)."""
    log.info(
        "%s: staged %d task event files (%.0f MiB)", inputs.ref.id, len(inputs.task_files), inputs.task_bytes / 2**20
    )
    worker_logs = _worker_logs(inputs.log_rows, inputs.node_records)
    inputs.con.register(
        "worker_logs",
        pa.Table.from_pylist(
            [{"node_id": n, "worker_id": w, "out_file": o, "err_file": e} for (n, w), (o, e) in worker_logs.items()],
            schema=pa.schema([(c, pa.string()) for c in ("node_id", "worker_id", "out_file", "err_file")]),
        ),
    )
    started = time.monotonic()
    # The job table's end_time of each finished driver job (EXPORT_DRIVER_JOB is_dead, end_time): the end the GCS
    # fails the job's unfinished tasks at. A submission job's own end is not it (the driver's exit is).
    job_ends = {job: ms(j.get("end_time")) or 0 for job, j in inputs.folded.driver_jobs.items() if j.get("is_dead")}
    actor_names = {a["actor_id"]: a.get("name") or "" for a in inputs.folded.actors.values()}

    def fold() -> tuple[dict[str, int], dict[str, list[str]]]:
        return fold_tasks(
            inputs.con, inputs.task_files, inputs.tmp, inputs.session_end_ms, job_ends, actor_names, inputs.task_bytes
        )

    try:
        counts, parts = fold()
    except duckdb.Error as e:
        if not inputs.task_sources:
            raise
        # A segment staged as it is stored could not be decompressed (DuckDB read it first): stage them all
        # decompressed, which ends each file at its first damaged segment and notes it, and fold again.
        log.warning("%s: staged task events unreadable (%s); staging them decompressed", inputs.ref.id, e)
        _stage_decompressed(inputs)
        counts, parts = fold()
    inputs.files.update(parts)
    log.info("%s: folded %d task attempts in %.1fs", inputs.ref.id, counts["tasks"], time.monotonic() - started)
    if counts["task_lines"] > counts["task_events"]:
        unread = counts["task_lines"] - counts["task_events"]
        inputs.folded.damage.note(
            "export_events/event_EXPORT_TASK_*", f"{unread} unreadable task event line(s)", unread
        )
    shutil.rmtree(inputs.tmp / "stage", ignore_errors=True)
    return {"tasks": counts["tasks"], "failed_tasks": counts["failed_tasks"]}


def _stage_decompressed(inputs: Inputs) -> None:
    """The task event files staged as gzip members, staged again decompressed (staging.stage_lines)."""
    members, inputs.task_sources = inputs.task_sources, {}
    files, inputs.task_files, inputs.task_bytes = inputs.task_files, [], 0
    for path in files:
        source = members.get(path)
        if source is None:
            inputs.add_task_file(path)
            continue
        path.unlink(missing_ok=True)
        plain = path.with_suffix("")
        staging.stage_lines(inputs.store, source.node, source.segs, plain, inputs.folded.damage, source.where)
        inputs.add_task_file(plain)


def _task_timeline(inputs: Inputs) -> dict[str, int]:
    build_task_timeline(inputs.con, inputs.paths(TASKS), inputs.tmp)
    return {}


def _workers(inputs: Inputs) -> dict[str, int]:
    drivers = [
        {
            "job_id": j["job_id"],
            "pid": int(j["driver_info"]["pid"]) if j["driver_info"]["pid"] else None,
            "ip": j["driver_info"]["node_ip_address"],
            "start": j["start_time"],
            "end": j["end_time"],
        }
        for j in inputs.jobs
        if j["job_id"] and j["driver_info"]
    ]
    workers = build_workers(
        inputs.con,
        inputs.paths(TASKS),
        inputs.log_rows,
        drivers,
        inputs.nodes_ip,
        inputs.session_end_ms is not None,
    )
    inputs.close()  # the last builder that uses DuckDB
    return _write(
        inputs,
        WORKERS,
        [
            {
                "worker_id": w["worker_id"],
                "node_id": w["node_id"],
                "pid": w["pid"],
                "worker_type": w["worker_type"],
                "record": json.dumps(w),
            }
            for w in workers
        ],
    )


def _actors(inputs: Inputs) -> dict[str, int]:
    actors = [actor_record(a, inputs.nodes_ip, inputs.session_end_ms) for a in inputs.folded.actors.values()]
    return _write(
        inputs,
        ACTORS,
        [
            {
                "actor_id": a["actorId"],
                "job_id": a["jobId"],
                "state": a["state"],
                "class_name": a["className"],
                "name": a["name"],
                "node_id": a["address"]["nodeId"],
                "pid": a["pid"],
                "record": json.dumps(a),
            }
            for a in actors
        ],
    )


def _jobs(inputs: Inputs) -> dict[str, int]:
    return _write(
        inputs,
        JOBS,
        [
            {
                "job_id": j["job_id"],
                "submission_id": j["submission_id"],
                "type": j["type"],
                "status": j["status"],
                "start_time": j["start_time"],
                "record": json.dumps(j),
            }
            for j in inputs.jobs
        ],
    )


def _nodes(inputs: Inputs) -> dict[str, int]:
    nodes = [node_record(n) for n in inputs.folded.nodes.values()]
    return _write(
        inputs,
        NODES,
        [
            {
                "node_id": n["node_id"],
                "state": n["state"],
                "is_head_node": n["is_head_node"],
                "node_ip": n["node_ip"],
                "record": json.dumps(n),
            }
            for n in nodes
        ],
    )


def _log_files(inputs: Inputs) -> dict[str, int]:
    return _write(inputs, LOG_FILES, inputs.log_rows)


def _log_search(inputs: Inputs) -> dict[str, int]:
    nodes = [inputs.ref.node(n) for n in inputs.node_records]
    return log_tables.build(
        inputs.store,
        nodes,
        inputs.tmp,
        inputs.tmp / "log_stage",
        inputs.memory_limit,
        inputs.folded.damage,
        previous=inputs.previous,
    )


def _cluster_events(inputs: Inputs) -> dict[str, int]:
    return _write(inputs, CLUSTER_EVENTS, sorted(inputs.event_rows, key=lambda r: r["timestamp"]))


def _worker_logs(
    log_rows: list[dict[str, Any]], nodes: dict[str, NodeRecord]
) -> dict[tuple[str, str], tuple[str, str]]:
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


# Our own indexes, which no page of Ray's UI reads: a first open leaves them to follow (build.py add_deferred).
TIMELINE = Builder((TASK_TIMELINE,), _task_timeline, reads=(TASKS,))
SEARCH = Builder((LOG_LINES, LOG_TERMS), _log_search)
DEFERRED = (TIMELINE, SEARCH)
BUILDERS = (
    Builder((METRIC_SERIES, METRIC_SAMPLES), _metrics),
    Builder((PLACEMENT_GROUPS,), _placement_groups),
    Builder((TASKS, PROFILE_EVENTS), _tasks),
    TIMELINE,
    Builder((WORKERS,), _workers, reads=(TASKS,)),
    Builder((ACTORS,), _actors),
    Builder((JOBS,), _jobs),
    Builder((NODES,), _nodes),
    Builder((LOG_FILES,), _log_files),
    Builder((CLUSTER_EVENTS,), _cluster_events),
    SEARCH,
)


def check(builders: tuple[Builder, ...] = BUILDERS, tables: tuple[Table, ...] = TABLES) -> None:
    """Every registered table has exactly one builder, and a builder reads only tables built before it."""
    built: list[Table] = []
    for b in builders:
        missing = [t.name for t in b.reads if t not in built]
        if missing:
            raise ValueError(f"builder of {b.tables[0].name} reads {missing} before they are built")
        built += b.tables
    if sorted(t.name for t in built) != sorted(t.name for t in tables):
        raise ValueError(
            f"the builders write {sorted(t.name for t in built)}, the registry lists "
            f"{sorted(t.name for t in tables)}: register each table in archive/compacted.py once "
            "and give it one Builder here"
        )


check()


def info_counts(results: list[tuple[Builder, dict[str, int]]]) -> dict[str, int]:
    """The builders' counts, in the registry's order of their tables (info.json's order, whatever the run order)."""
    order = {t.name: i for i, t in enumerate(TABLES)}
    return {k: v for _, counts in sorted(results, key=lambda r: order[r[0].tables[0].name]) for k, v in counts.items()}
