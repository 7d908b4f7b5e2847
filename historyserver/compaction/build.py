"""Compaction: one session's archived events turned into query-ready Parquet tables.

The tables are a versioned, throw-away cache (COMPACTION_VERSION): a new version rebuilds them, never migrates.
One pass reads the session's archive (`_read`), then the registered builders (tables.py) write the tables.
A first open may leave our own indexes (the task timeline, log search) to follow (`compact(defer=True)`, then
`add_deferred`): the session's pages answer before they are built.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from archive import api_snapshots as snapshot_format
from archive import logs as archive_logs
from archive.api_snapshots import CLUSTER_STATUS_ROUTES
from archive.atomic import write_atomic
from archive.compacted import COMPACTION_VERSION, FILES, INFO_FILE, PENDING, pending, table_files
from archive.errors import NotFound
from archive.layout import NodeRef, SessionRef
from archive.manifest import NodeRecord
from archive.storage import Store
from historyserver.compaction import api_snapshots, ray_events, staging
from historyserver.compaction.cluster_events import event_rows as cluster_event_rows
from historyserver.compaction.cluster_events import is_cluster_events_file
from historyserver.compaction.export_events import fold_lines
from historyserver.compaction.tables import BUILDERS, DEFAULT_MEMORY, DEFERRED, Builder, Inputs, info_counts

log = logging.getLogger("rayhistory.compaction")

EXPORT_DIR = "export_events/"


def _read_node_record(store: Store, ref: SessionRef, node_id: str) -> NodeRecord:
    try:
        return NodeRecord.from_json(store.get(ref.node(node_id).node_key))
    except NotFound:
        return NodeRecord(node_id=node_id)


def compact(
    store: Store,
    ref: SessionRef,
    out_dir: Path,
    session_end_ms: int | None,
    memory_limit: str = DEFAULT_MEMORY,
    closed: bool | None = None,
    defer: bool = False,
) -> dict[str, Any]:
    """Build every registered table of the session into out_dir (atomically: a temp dir renamed into place), with
    DuckDB's memory bounded by memory_limit (e.g. 600MB). `closed`, when given, is recorded in its info (whether
    the session can still change), written once with the rest. With `defer`, the tables of DEFERRED builders are
    left out and listed in the info as PENDING, for add_deferred to build."""
    started = time.monotonic()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    inputs = Inputs(store, ref, tmp, session_end_ms, memory_limit, previous=out_dir if out_dir.is_dir() else None)
    try:
        _read(inputs)
        phases = {"read": round(time.monotonic() - started, 3)}
        log.info("%s: read the archive in %.1fs", ref.id, phases["read"])
        results = run_builders([b for b in BUILDERS if not (defer and b in DEFERRED)], inputs, phases)
        inputs.close()
        info = build_info(inputs, started, results, phases, closed)
        if defer:
            info[PENDING] = [t.name for b in DEFERRED for t in b.tables]
        write_into_place(tmp, out_dir, info)
    finally:
        inputs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("compacted %s in %.2fs: %s", ref.id, info["seconds"], info["counts"])
    return info


def add_deferred(
    store: Store,
    ref: SessionRef,
    tables: Path,
    memory_limit: str = DEFAULT_MEMORY,
    on_built: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Build the tables that compact(defer=True) left pending in `tables` (their builders read the tables built
    and the archive), one builder at a time: after each, its tables are moved in and the info rewritten without
    them pending (atomically: a reader sees the old info or the new, and the new one's files are there), then
    on_built(info) is called. Returns the last info; a complete build's is returned as it is."""
    info = json.loads((tables / INFO_FILE).read_text())
    for builder in [b for b in BUILDERS if any(t.name in pending(info) for t in b.tables)]:
        info = _add_one(store, ref, tables, memory_limit, builder, info)
        if on_built is not None:
            on_built(info)
    return info


def _add_one(
    store: Store, ref: SessionRef, tables: Path, memory_limit: str, builder: Builder, info: dict[str, Any]
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=".deferred-", dir=tables))
    inputs = Inputs(store, ref, tmp, None, memory_limit)  # (no deferred builder reads the session's end)
    inputs.node_records = {n: NodeRecord(node_id=n) for n in info.get("archived_nodes", {})}
    inputs.files = dict(info.get(FILES) or {})
    read = {name for t in builder.reads for name in table_files(info, t)}
    phases: dict[str, float] = {}
    try:
        for name in read:  # where the builder reads them (the build's folder), as the same files
            os.link(tables / name, tmp / name)
        results = run_builders([builder], inputs, phases)
        inputs.close()
        for built in tmp.iterdir():
            if built.is_file() and built.name not in read:
                built.replace(tables / built.name)
    finally:
        inputs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    was, damage = info.get("damage") or {}, inputs.folded.damage
    done = {t.name for t in builder.tables}
    left = [name for name in pending(info) if name not in done]
    info = {
        **{k: v for k, v in info.items() if k != PENDING},
        **({PENDING: left} if left else {}),
        "counts": {**info.get("counts", {}), **info_counts(results)},
        "phases": {**info.get("phases", {}), **phases},
        **({FILES: inputs.files} if inputs.files else {}),
        "damage": {
            "bad_lines": was.get("bad_lines", 0) + damage.bad_lines,
            "examples": (was.get("examples", []) + damage.examples)[:5],
        },
    }
    write_atomic(tables / INFO_FILE, json.dumps(info, indent=1).encode())
    log.info("%s: %s added in %.2fs", ref.id, ", ".join(sorted(done)), sum(phases.values()))
    return info


def run_builders(
    builders: Sequence[Builder], inputs: Inputs, phases: dict[str, float]
) -> list[tuple[Builder, dict[str, int]]]:
    """Run the builders in order, each one's seconds added to `phases` under its first table's name."""
    results = []
    for builder in builders:
        started = time.monotonic()
        results.append((builder, builder.build(inputs)))
        phases[builder.tables[0].name] = round(time.monotonic() - started, 3)
    return results


def build_info(
    inputs: Inputs,
    started: float,
    results: list[tuple[Builder, dict[str, int]]],
    phases: dict[str, float],
    closed: bool | None = None,
) -> dict[str, Any]:
    """The INFO_FILE of a build (archive/FORMAT.md `compacted/`): what was built, from what, and how long it took
    (`phases`: seconds of the reading pass and of each builder); `closed` when known."""
    info = {
        "compaction_version": COMPACTION_VERSION,
        "session_id": inputs.ref.id,
        "built_at_ms": int(time.time() * 1000),
        "seconds": round(time.monotonic() - started, 3),
        "phases": phases,
        "counts": info_counts(results),
        FILES: inputs.files,
        "damage": asdict(inputs.folded.damage),
        # The autoscaler's last word on the cluster, as Ray's /api/cluster_status answered it.
        "cluster_status": {
            r: {"time_ms": inputs.api_latest[r].time_ms, "body": inputs.api_latest[r].body}
            for r in CLUSTER_STATUS_ROUTES
            if r in inputs.api_latest
        },
        "archived_nodes": {n: asdict(r) for n, r in inputs.node_records.items()},
    }
    return info if closed is None else {**info, "closed": closed}


def write_into_place(tmp: Path, out_dir: Path, info: dict[str, Any]) -> None:
    """Write info into the built folder, then rename it to out_dir: readers see the old tables or the new, whole."""
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=1))
    old = None
    if out_dir.exists():
        old = out_dir.with_name(out_dir.name + f".old-{os.getpid()}-{time.monotonic_ns()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


STAGE_THREADS = 2  # task event files staged at once: checking each file's last segment is zlib's work (no GIL)
_Staged = tuple[Path, int | None, staging.Source | None]  # Inputs.add_task_file's arguments


def _read(inputs: Inputs) -> None:
    """One pass over every node's sources, gathering what the builders need (metrics are read by their builder).
    Task event files are staged in threads, and added to the inputs in the order the pass met them."""
    with ThreadPoolExecutor(STAGE_THREADS, thread_name_prefix="stage") as pool:
        staged: list[Future[_Staged]] = []
        for node_id in inputs.store.list_dirs(inputs.ref.nodes_prefix):
            node = inputs.ref.node(node_id)
            inputs.node_records[node_id] = _read_node_record(inputs.store, inputs.ref, node_id)
            _read_logs(inputs, node, lambda *a, n=node: staged.append(pool.submit(_stage_task_events, inputs, n, *a)))
            for path in _read_ray_events(inputs, node):
                staged.append(pool.submit(lambda p: (p, None, None), path))
            _read_api(inputs, node)
        for done in staged:
            inputs.add_task_file(*done.result())
    fold_read(inputs)


def fold_read(inputs: Inputs) -> None:
    """What the reading pass gathered, folded: the HTTP path's non-task events, then the job table's times."""
    ray_events.fold_ray_events(inputs.http_events, inputs.folded)
    api_snapshots.apply_job_table_times(inputs.api_latest, inputs.folded.driver_jobs)


def _read_logs(inputs: Inputs, node: NodeRef, stage_tasks: Callable[[str, list, str], object]) -> None:
    """Every file of Ray's logs/ is a log_files row; cluster events and export events are read too, EXPORT_TASK
    files handed to stage_tasks(path, segments, where)."""
    store, node_id, damage = inputs.store, node.node_id, inputs.folded.damage
    listed = archive_logs.list_segments(store, node)
    for path, (archived_path, epoch) in archive_logs.read_renames(store, node).items():
        gen = [s for s in listed.get(archived_path, []) if s.epoch == epoch]
        if gen and path not in listed:
            inputs.log_rows.append(_log_row(node_id, path, gen))  # a rotated file, under its current name
    for path, segs in listed.items():
        inputs.log_rows.append(
            _log_row(node_id, path, [s for s in segs if s.epoch == max(x.epoch for x in segs)], len(segs))
        )
        name = path.split("/")[-1]
        where = f"{node_id[:12]}:{path}"
        if is_cluster_events_file(path):
            data, _ = staging.stage_lines(store, node, segs, None, damage, where)
            inputs.event_rows += cluster_event_rows(data.splitlines(), inputs.seen_events)
            continue
        if not path.startswith(EXPORT_DIR) or not name.startswith("event_EXPORT_"):
            continue
        if name.startswith("event_EXPORT_TASK"):
            stage_tasks(path, segs, where)
        else:
            data, _ = staging.stage_lines(store, node, segs, None, damage, where)
            fold_lines(data.splitlines(), where, inputs.folded)


def _stage_task_events(inputs: Inputs, node: NodeRef, path: str, segs: list, where: str) -> _Staged:
    """An EXPORT_TASK file staged for fold_tasks: as gzip members (staging.stage_members), decompressed where
    those cannot stage it exactly."""
    staged = inputs.tmp / "stage" / node.node_id / path
    members = staged.with_name(staged.name + ".gz")
    size = staging.stage_members(inputs.store, node, segs, members)
    if size is None:
        members.unlink(missing_ok=True)
        staging.stage_lines(inputs.store, node, segs, staged, inputs.folded.damage, where)
        return staged, None, None
    return members, size, staging.Source(node, segs, where)


def _read_ray_events(inputs: Inputs, node: NodeRef) -> list[Path]:
    """Ray's HTTP event path (ray_events.py): RayEvents become export-event lines for the same folds (the files
    staged, returned)."""
    staged_files = []
    stage = inputs.tmp / "stage" / node.node_id
    for path, segs in archive_logs.list_segments(inputs.store, node, source="ray_events").items():
        where = f"{node.node_id[:12]}:ray_events/{path}"
        raw = stage / "ray_events.raw" / path
        staging.stage_lines(inputs.store, node, segs, raw, inputs.folded.damage, where)
        staged = stage / "ray_events" / path
        with raw.open("rb") as lines:
            ray_events.normalize_spool(lines, where, inputs.folded.damage, staged, inputs.http_events)
        staged_files.append(staged)
    return staged_files


def _read_api(inputs: Inputs, node: NodeRef) -> None:
    """The head's snapshots of Ray's dashboard API: what no event stream carries."""
    for path, segs in archive_logs.list_segments(inputs.store, node, source=snapshot_format.SOURCE).items():
        where = f"{node.node_id[:12]}:{snapshot_format.SOURCE}/{path}"
        data, _ = staging.stage_lines(inputs.store, node, segs, None, inputs.folded.damage, where)
        for route, snap in api_snapshots.latest_by_route(data.splitlines(), inputs.folded.damage, where).items():
            if route not in inputs.api_latest or snap.time_ms >= inputs.api_latest[route].time_ms:
                inputs.api_latest[route] = snap


def _log_row(node_id: str, path: str, generation: list, segment_count: int | None = None) -> dict[str, Any]:
    run = archive_logs.covering(generation)
    return {
        "node_id": node_id,
        "path": path,
        "size": run[-1].end if run else 0,
        "segments": segment_count or len(generation),
        "complete": bool(run) and len(run) == len(generation),
    }
