"""A session's tables from its incremental fold (incremental.py): the one-shot build (build.compact) with the task
events already folded, so that only the last batch, the active attempts and the small tables are left to do.

The reading pass is build's, minus what the folder read: EXPORT_TASK files are not staged and ray_events/ spools
are not read again (their non-task events were kept by the folds). Every other builder runs as in build.compact,
so the tables are the same files, and the same info.json.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from archive import logs as archive_logs
from archive.api_snapshots import CLUSTER_STATUS_ROUTES
from archive.compacted import COMPACTION_VERSION, INFO_FILE, TASKS
from archive.layout import NodeRef
from historyserver.compaction import build, ray_events
from historyserver.compaction.cluster_events import event_rows as cluster_event_rows
from historyserver.compaction.cluster_events import is_cluster_events_file
from historyserver.compaction.export_events import fold_lines
from historyserver.compaction.ids import ms
from historyserver.compaction.incremental import TASK_FILE_PREFIX, Folder
from historyserver.compaction.tables import BUILDERS, Builder, Inputs, _worker_logs, info_counts

log = logging.getLogger("rayhistory.compaction")


def compact_folded(folder: Folder, out_dir: Path, session_end_ms: int | None) -> dict[str, Any]:
    """Fold what is left, then build every table into out_dir (atomically, as build.compact does)."""
    started = time.monotonic()
    folds = folder.fold_all()
    folded_s = time.monotonic() - started
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    inputs = Inputs(folder.store, folder.ref, tmp, session_end_ms, folder.memory_limit)
    try:
        _read(inputs, folder)
        counts: dict[str, int] = {}

        def tasks(inp: Inputs) -> dict[str, int]:
            job_ends = {j: ms(x.get("end_time")) or 0 for j, x in inp.folded.driver_jobs.items() if x.get("is_dead")}
            actor_names = {a["actor_id"]: a.get("name") or "" for a in inp.folded.actors.values()}
            worker_logs = _worker_logs(inp.log_rows, inp.node_records)
            counts.update(folder.tasks_tables(inp.con, inp.tmp, session_end_ms, job_ends, actor_names, worker_logs))
            if counts["task_lines"] > counts["task_events"]:
                unread = counts["task_lines"] - counts["task_events"]
                inp.folded.damage.note(f"{TASK_FILE_PREFIX}_*", f"{unread} unreadable task event line(s)", unread)
            return {"tasks": counts["tasks"], "failed_tasks": counts["failed_tasks"]}

        builders = [Builder(b.tables, tasks, b.reads) if TASKS in b.tables else b for b in BUILDERS]
        results = [(b, b.build(inputs)) for b in builders]
        inputs.close()
        info = {
            "compaction_version": COMPACTION_VERSION,
            "session_id": folder.ref.id,
            "built_at_ms": int(time.time() * 1000),
            "seconds": round(time.monotonic() - started, 3),
            "counts": info_counts(results),
            "damage": asdict(inputs.folded.damage),
            "cluster_status": {
                r: {"time_ms": inputs.api_latest[r].time_ms, "body": inputs.api_latest[r].body}
                for r in CLUSTER_STATUS_ROUTES
                if r in inputs.api_latest
            },
            "archived_nodes": {n: asdict(r) for n, r in inputs.node_records.items()},
            "incremental": {"last_folds": len(folds), "fold_seconds": round(folded_s, 3)},
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
        inputs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built %s from its folds in %.2fs: %s", folder.ref.id, info["seconds"], info["counts"])
    return info


def _read(inputs: Inputs, folder: Folder) -> None:
    """build._read without the task events: the folds hold them, and the non-task events of the spools."""
    cp_damage = folder.damage()
    inputs.folded.damage.bad_lines, inputs.folded.damage.examples = cp_damage.bad_lines, cp_damage.examples
    for node_id in inputs.store.list_dirs(inputs.ref.nodes_prefix):
        node = inputs.ref.node(node_id)
        inputs.node_records[node_id] = build._read_node_record(inputs.store, inputs.ref, node_id)
        _read_logs(inputs, node)
        build._read_api(inputs, node)
    inputs.http_events = folder.http_events()
    ray_events.fold_ray_events(inputs.http_events, inputs.folded)


def _read_logs(inputs: Inputs, node: NodeRef) -> None:
    """build._read_logs, leaving the EXPORT_TASK files to the folder."""
    store, node_id, damage = inputs.store, node.node_id, inputs.folded.damage
    listed = archive_logs.list_segments(store, node)
    for path, (archived_path, epoch) in archive_logs.read_renames(store, node).items():
        gen = [s for s in listed.get(archived_path, []) if s.epoch == epoch]
        if gen and path not in listed:
            inputs.log_rows.append(build._log_row(node_id, path, gen))
    for path, segs in listed.items():
        newest = max(x.epoch for x in segs)
        inputs.log_rows.append(build._log_row(node_id, path, [s for s in segs if s.epoch == newest], len(segs)))
        name = path.split("/")[-1]
        where = f"{node_id[:12]}:{path}"
        if is_cluster_events_file(path):
            data, _ = build._stage(store, node, segs, None, damage, where)
            inputs.event_rows += cluster_event_rows(data.splitlines(), inputs.seen_events)
        elif (
            path.startswith(build.EXPORT_DIR)
            and name.startswith("event_EXPORT_")
            and not path.startswith(TASK_FILE_PREFIX)
        ):
            data, _ = build._stage(store, node, segs, None, damage, where)
            fold_lines(data.splitlines(), where, inputs.folded)


__all__ = ["compact_folded"]
