"""A session's tables from its incremental fold (incremental.py): the one-shot build (build.compact) with the task
events already folded, so that only the last batch, the active attempts and the small tables are left to do.

The reading pass is build's, minus what the folder read: EXPORT_TASK files are not staged and ray_events/ spools
are not read again (their non-task events were kept by the folds). Every other builder runs as in build.compact,
so the tables are the same files, and the same info.json.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb

from archive import logs as archive_logs
from archive.compacted import LOG_LINES, LOG_TERMS, PROFILE_EVENTS, TASK_TIMELINE, TASKS, Table, part_file
from archive.layout import NodeRef
from historyserver.compaction import build, checkpoint, log_parts, staging, task_timeline, tasks_sql
from historyserver.compaction.cluster_events import event_rows as cluster_event_rows
from historyserver.compaction.cluster_events import is_cluster_events_file
from historyserver.compaction.export_events import fold_lines
from historyserver.compaction.ids import ms
from historyserver.compaction.incremental import (
    FOLD_MEMORY,
    PART_ROW_GROUP_ROWS,
    TASK_FILE_PREFIX,
    Folder,
    changed_workers,
    listed,
    quoted,
    render_tasks,
    smaller_memory,
    without_out,
)
from historyserver.compaction.tables import BUILDERS, Builder, Inputs, _worker_logs

log = logging.getLogger("rayhistory.compaction")

LastLogPart = tuple[list[tuple[Path, Path]], dict[str, int]] | None  # log_parts.finish's answer


def compact_folded(
    folder: Folder, out_dir: Path, session_end_ms: int | None, closed: bool | None = None
) -> dict[str, Any]:
    """Fold what is left, then build every table into out_dir (atomically, as build.compact does; `closed` as
    there)."""
    started = time.monotonic()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    inputs = Inputs(folder.store, folder.ref, tmp, session_end_ms, folder.memory_limit)
    # The log tables' last part is parsed meanwhile: the end's folds leave the log parts' state as it is (at_end),
    # and parsing is mostly Python while the folds and the tasks' rendering are mostly DuckDB's (0.6 s of a 1M-task
    # session's end, on 2 cores).
    cp = checkpoint.load(folder.dir)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-last-part")
    last_logs = pool.submit(_last_log_part, folder, cp, tmp / "log_last")
    try:
        folds = folder.fold_all(at_end=True)
        folded_s = time.monotonic() - started
        read_started = time.monotonic()
        _read(inputs, folder)
        phases = {"last folds": round(folded_s, 3), "read": round(time.monotonic() - read_started, 3)}
        counts: dict[str, int] = {}

        def tasks(inp: Inputs) -> dict[str, int]:
            job_ends = {j: ms(x.get("end_time")) or 0 for j, x in inp.folded.driver_jobs.items() if x.get("is_dead")}
            actor_names = {a["actor_id"]: a.get("name") or "" for a in inp.folded.actors.values()}
            worker_logs = _worker_logs(inp.log_rows, inp.node_records)
            built, files = _tasks_tables(folder, inp.con, inp.tmp, session_end_ms, job_ends, actor_names, worker_logs)
            counts.update(built)
            inp.files.update(files)
            if counts["task_lines"] > counts["task_events"]:
                unread = counts["task_lines"] - counts["task_events"]
                inp.folded.damage.note(f"{TASK_FILE_PREFIX}_*", f"{unread} unreadable task event line(s)", unread)
            return {"tasks": counts["tasks"], "failed_tasks": counts["failed_tasks"]}

        def log_search(inp: Inputs) -> dict[str, int]:
            try:
                return _log_tables(last_logs.result(), inp) or log_builder(inp)
            finally:
                shutil.rmtree(tmp / "log_last", ignore_errors=True)  # placed as the tables' parts (hard links)

        log_builder = next(b.build for b in BUILDERS if LOG_LINES in b.tables)
        builders = [
            Builder(b.tables, tasks, b.reads)
            if TASKS in b.tables
            else Builder(b.tables, log_search, b.reads)
            if LOG_LINES in b.tables
            else Builder(b.tables, lambda inp: {}, b.reads)  # written with the tasks' parts (_tasks_tables)
            if TASK_TIMELINE in b.tables
            else b
            for b in BUILDERS
        ]
        results = build.run_builders(builders, inputs, phases)
        inputs.close()
        info = build.build_info(inputs, started, results, phases, closed)
        info["incremental"] = {"last_folds": len(folds), "fold_seconds": round(folded_s, 3)}
        build.write_into_place(tmp, out_dir, info)
    finally:
        pool.shutdown(wait=True)  # its files are under tmp
        inputs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built %s from its folds in %.2fs: %s", folder.ref.id, info["seconds"], info["counts"])
    return info


def _last_log_part(folder: Folder, cp: checkpoint.Checkpoint, last: Path) -> LastLogPart:
    """log_parts.finish into `last`, in a fold's memory (it runs beside the end's folds and tasks)."""
    last.mkdir()
    memory = smaller_memory(FOLD_MEMORY, folder.memory_limit)
    return log_parts.finish(folder.store, folder.ref, cp, folder.dir, last, last / "tmp", memory)


def _log_tables(found: LastLogPart, inputs: Inputs) -> dict[str, int] | None:
    """The log tables as the folds' parts and the last one (log_parts.py), or None: built whole."""
    if found is None:
        return None
    parts, counts = found
    inputs.files[LOG_LINES.name] = _place([lines for lines, _ in parts], inputs.tmp, LOG_LINES)
    inputs.files[LOG_TERMS.name] = _place([terms for _, terms in parts], inputs.tmp, LOG_TERMS)
    return counts


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
    build.fold_read(inputs)


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
            data, _ = staging.stage_lines(store, node, segs, None, damage, where)
            inputs.event_rows += cluster_event_rows(data.splitlines(), inputs.seen_events)
        elif (
            path.startswith(build.EXPORT_DIR)
            and name.startswith("event_EXPORT_")
            and not path.startswith(TASK_FILE_PREFIX)
        ):
            data, _ = staging.stage_lines(store, node, segs, None, damage, where)
            fold_lines(data.splitlines(), where, inputs.folded)


__all__ = ["compact_folded"]


def _tasks_tables(
    folder: Folder,
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    session_end_ms: int | None,
    job_ends_ms: dict[str, int],
    actor_names: dict[str, str],
    worker_logs: dict[tuple[str, str], tuple[str | None, str | None]],
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Write tasks, profile_events and task_timeline into out_dir as parts (incremental.py): the final parts,
    linked as they are (one holding an attempt of a worker whose log files changed is rewritten without it), and
    the active part with those attempts, folded now. Uniting them into one sorted file took 2.3 s of a 100k-task
    session's end; sorting every attempt by time for task_timeline, 2.4 s of a 1M-task session's."""
    cp = checkpoint.load(folder.dir)
    work = out_dir / "incremental"
    work.mkdir(parents=True, exist_ok=True)
    d = folder.dir
    changed = changed_workers(cp, worker_logs)
    con.execute(tasks_sql._EMPTY_EVENTS)
    con.execute("ALTER TABLE t_ev RENAME TO t_new")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE t_keys AS SELECT tid, attempt, {tasks_sql._hex('tid')} AS hex FROM t_new"
    )
    con.execute("CREATE OR REPLACE TEMP TABLE t_out (task_id VARCHAR, attempt_number INTEGER)")
    con.execute("CREATE OR REPLACE TEMP TABLE t_reopened AS SELECT * FROM t_new LIMIT 0")
    hit: set[str] = set()  # the final parts holding an attempt of t_out
    if changed and cp.final:
        con.execute("CREATE OR REPLACE TEMP TABLE t_workers (node_id VARCHAR, worker_id VARCHAR)")
        con.executemany("INSERT INTO t_workers VALUES (?, ?)", [w.split("/") for w in changed])
        found = con.execute(f"""
            SELECT task_id, attempt_number, filename FROM read_parquet({listed([d / p.tasks for p in cp.final])},
                                                                        filename = true) f
            SEMI JOIN t_workers w ON w.node_id IS NOT DISTINCT FROM f.node_id AND w.worker_id IS NOT DISTINCT FROM f.worker_id
        """).fetchall()
        con.executemany("INSERT INTO t_out VALUES (?, ?)", [[t, a] for t, a, _ in found])
        hit = {Path(f).name for _, _, f in found}
        con.execute(f"""
            INSERT INTO t_reopened SELECT e.* FROM read_parquet({listed([d / p.events for p in cp.final])}) e
            SEMI JOIN t_out o ON o.task_id = {tasks_sql._hex("e.tid")} AND o.attempt_number = e.attempt
        """)
    active = f"SELECT * FROM read_parquet({quoted(d / cp.active)})" if cp.active else "SELECT * FROM t_new"
    con.execute(f"CREATE OR REPLACE TEMP TABLE t_ev AS {active} UNION ALL SELECT * FROM t_reopened")
    con.execute("DROP TABLE t_new")
    render_tasks(con, work, session_end_ms, job_ends_ms, actor_names, worker_logs)
    try:
        tasks_parts, profile_parts, timeline_parts = [], [], []
        for part in cp.final:
            sources = (
                (tasks_parts, d / part.tasks, PART_ROW_GROUP_ROWS),
                (profile_parts, d / part.profile, PART_ROW_GROUP_ROWS),
                (timeline_parts, d / part.timeline, task_timeline.ROW_GROUP_ROWS),
            )
            for kept, src, groups in sources:
                if part.tasks in hit:  # rewritten without the attempts refolded into the active part
                    without_out(con, src, work / f"kept-{src.name}", groups)
                    src = work / f"kept-{src.name}"
                kept.append(src)
        tasks_parts.append(work / TASKS.file)
        profile_parts.append(work / PROFILE_EVENTS.file)
        # The last part's lanes: numbered after the final parts' (not committed: the folder's own go on from theirs).
        task_timeline.write_part(con, work / TASKS.file, work / TASK_TIMELINE.file, dict(cp.lanes), dict(cp.nodes))
        timeline_parts.append(work / TASK_TIMELINE.file)
        files = {
            TASKS.name: _place(tasks_parts, out_dir, TASKS),
            PROFILE_EVENTS.name: _place(profile_parts, out_dir, PROFILE_EVENTS),
            TASK_TIMELINE.name: _place(timeline_parts, out_dir, TASK_TIMELINE),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tasks, failed = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE state = 'FAILED') "
        f"FROM read_parquet({listed([out_dir / f for f in files[TASKS.name]])})"
    ).fetchone()
    counts = {"tasks": tasks, "failed_tasks": failed, "task_lines": cp.task_lines, "task_events": cp.task_events}
    return counts, files


def _place(parts: list[Path], out_dir: Path, table: Table) -> list[str]:
    """The parts as the table's part files in out_dir: hard links (the folder's files are never rewritten in place,
    only replaced), or copies where the folder is on another file system."""
    names = []
    for i, src in enumerate(parts):
        dst = out_dir / part_file(table, i)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        names.append(dst.name)
    return names
