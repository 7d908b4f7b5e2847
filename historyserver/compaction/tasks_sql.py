"""Task attempts and their profile events, folded from EXPORT_TASK files by DuckDB.

A session can hold millions of task events, so this fold runs as SQL over the staged files (spilling to disk
when needed) instead of as Python objects: memory stays bounded and both cores are used.
A task arrives in pieces (its owner's definition and state updates, its worker's RUNNING, log offsets and profile
events), so rows are merged by (task_id, attempt_number); the newest non-empty value of each field wins.
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from archive.compacted import PROFILE_EVENTS, TASKS, part_file
from historyserver.compaction.export_events import TASK_STATUS

log = logging.getLogger("rayhistory.compaction")

_ANSI = r"\x1b\[[0-9;]*[A-Za-z]"


def _hex(col: str) -> str:
    """Ray's REST ids are lowercase hex of the binary id that events carry as base64; empty means absent."""
    return f"CASE WHEN coalesce({col}, '') = '' THEN NULL ELSE lower(hex(try(from_base64({col})))) END"


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


PARTITION_BYTES = 32 << 20  # events of one range: what its fold needs in memory grows with it (RANGE_WORKERS at once)
RANGE_WORKERS = 2  # ranges folded at once (the machines we run on have a few cores)
ROW_GROUP_ROWS = 16384  # small groups: a page of tasks reads a few groups, not the whole table
UNFINISHED_NOTE = "Unfinished: the cluster ended while this task was {state}; it never reported a final state."
# Ray's GCS, when a driver exits: GcsTaskManager::OnJobFinished -> GcsTaskManagerStorage::MarkTasksFailedOnJobEnds
# (src/ray/gcs/gcs_task_manager.cc), wired in GcsServer::InstallEventListeners (gcs_server.cc) with the job table's
# end_time. Every attempt of the job without FINISHED or FAILED (IsTaskTerminated) gets state_ts_ns[FAILED] = the
# job's end and its error_info replaced by this WORKER_DIED error. The GCS does it on a timer,
# gcs_mark_task_failed_on_job_done_delay_ms (ray_config_def.h, 15 s) after the job ended: a cluster that died
# sooner never marked them (they are then unfinished, ended with the cluster).
JOB_END_ERROR_TYPE = "WORKER_DIED"
JOB_END_NOTE = "Job finishes ({job_id}) as driver exits. Marking all non-terminal tasks as failed."
JOB_DONE_DELAY_MS = 15_000
# TaskID::ForDriverTask (src/ray/common/id.cc): nil unique bytes (0xff) and the job's nil ActorID, so the hex id
# is 40 f's and the job id.
DRIVER_TASK_PREFIX = "f" * 40


# The parts of an EXPORT_TASK event the fold reads, typed so that each line is parsed once, by read_json: task_info
# and task_log_info as structs of the fields used (read_json renders a non-string value given a VARCHAR field as
# its JSON text, as json_extract_string would), so that no row's JSON is parsed again for each field.
_TASK_INFO = (
    "STRUCT(name VARCHAR, func_or_class_name VARCHAR, actor_id VARCHAR, type VARCHAR, parent_task_id VARCHAR, "
    "language VARCHAR, required_resources JSON, runtime_env_info JSON, placement_group_id VARCHAR, "
    "call_site VARCHAR, label_selector JSON)"
)
_LOG_INFO = (
    "STRUCT(stdout_file VARCHAR, stderr_file VARCHAR, stdout_start VARCHAR, stdout_end VARCHAR, "
    "stderr_start VARCHAR, stderr_end VARCHAR)"
)
_LOG_INFO_LATEST = ", ".join(
    f"{f} := arg_max(log_info.{f}, ts) FILTER (WHERE log_info.{f} IS NOT NULL)"
    for f in ("stdout_file", "stderr_file", "stdout_start", "stdout_end", "stderr_start", "stderr_end")
)
_PROFILE = "STRUCT(event_name VARCHAR, start_time VARCHAR, end_time VARCHAR, extra_data VARCHAR)[]"
_EVENT_TYPE = (
    f"STRUCT(task_id VARCHAR, attempt_number INTEGER, job_id VARCHAR, task_info {_TASK_INFO}, "
    "state_updates STRUCT(state_ts_ns MAP(VARCHAR, BIGINT), node_id VARCHAR, worker_id VARCHAR, worker_pid BIGINT, "
    f"error_info JSON, task_log_info {_LOG_INFO}, is_debugger_paused BOOLEAN), "
    "profile_events STRUCT(component_type VARCHAR, component_id VARCHAR, node_ip_address VARCHAR, "
    f"events {_PROFILE}))"
)
_EMPTY_EVENTS = (
    f"CREATE OR REPLACE TEMP TABLE t_ev (tid VARCHAR, attempt INTEGER, job VARCHAR, info {_TASK_INFO}, "
    "states MAP(VARCHAR, BIGINT), node VARCHAR, worker VARCHAR, pid BIGINT, error_info JSON, "
    f"log_info {_LOG_INFO}, debugger_paused BOOLEAN, component_type VARCHAR, component_id VARCHAR, "
    f"node_ip VARCHAR, profile {_PROFILE}, ts BIGINT)"
)


def _events_select(files: list[Path]) -> str:
    """One row per EXPORT_TASK event of the staged files, flattened to the pieces the fold needs."""
    listed = sql_list(files)
    return f"""
        SELECT d.task_id AS tid, coalesce(d.attempt_number, 0) AS attempt, d.job_id AS job, d.task_info AS info,
               d.state_updates.state_ts_ns AS states, nullif(d.state_updates.node_id, '') AS node,
               nullif(d.state_updates.worker_id, '') AS worker, d.state_updates.worker_pid AS pid,
               d.state_updates.error_info AS error_info, d.state_updates.task_log_info AS log_info,
               d.state_updates.is_debugger_paused AS debugger_paused,
               d.profile_events.component_type AS component_type, d.profile_events.component_id AS component_id,
               d.profile_events.node_ip_address AS node_ip, d.profile_events.events AS profile,
               coalesce(ts, 0) AS ts
        FROM (SELECT event_data AS d, "timestamp" AS ts, source_type
              FROM read_json({listed}, format = 'newline_delimited', ignore_errors = true,
                             columns = {{source_type: 'VARCHAR', "timestamp": 'BIGINT', event_data: '{_EVENT_TYPE}'}}))
        WHERE source_type = 'EXPORT_TASK' AND coalesce(d.task_id, '') <> ''
    """


# The split into ranges moves each event's line as it is, unparsed (each range's fold parses its own lines), by
# the first byte of its task id: the line read whole (no delimiter or quote is in a JSON line), written back the
# same. Parsing them all to write typed Parquet ranges took 16 s of a 1M-task first open; this takes 5 s.
# The first "task_id" key of a line is event_data's: ExportTaskEventData (src/ray/protobuf/export_task_event.proto)
# has task_id as field 1, and protobuf's JSON printer writes fields in field-number order; the only other
# "task_id" (TaskInfoEntry's, field 4) is the same id. parent_task_id does not match (no quote before "task_id").
# Lines of Ray's HTTP path are rewritten by ray_events.py with task_id first too.
_TASK_ID = r'"task_id"\s*:\s*"([^"]*)"'
_LINES = (
    "columns = {'line': 'VARCHAR'}, delim = '\x01', quote = '', escape = '', header = false, auto_detect = false, "
    "max_line_size = 16777216, buffer_size = 33554432, ignore_errors = true"  # read_json's largest object: 16 MB
)
SPLIT_FLUSH_ROWS = 16384
_AS_LINES = "HEADER false, DELIMITER '\x01', QUOTE '', ESCAPE ''"


def sql_list(files: list[Path]) -> str:
    """The files as a DuckDB list literal (for read_parquet, read_json, read_csv)."""
    return "[" + ", ".join(_sql_path(p) for p in files) + "]"


def fold_tasks(
    con: duckdb.DuckDBPyConnection,
    task_files: list[Path],
    out_dir: Path,
    session_end_ms: int | None = None,
    job_ends_ms: dict[str, int] | None = None,
    actor_names: dict[str, str] | None = None,
    total_bytes: int | None = None,
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Write the tasks and profile_events tables from the staged EXPORT_TASK files (decompressed, or gzip files
    named *.gz); returns counts (task_lines: the lines read, task_events: those that were task events), and the
    parts of each table written as several files (archive/compacted.py `files`).

    job_ends_ms: the end of each finished driver job (hex job id -> ms, the job table's end_time): a task of
    such a job without a final state failed when it ended, as Ray's GCS marks it (JOB_END_NOTE).
    actor_names: each named actor's name (hex actor id -> name), for its creation task's name.
    total_bytes: the files' lines, uncompressed (their sizes when not given).
    With session_end_ms (a closed session), any other task without a final state ends with the cluster: it
    keeps its last known state, and gets the session's end as its end time and a note as its error message.

    Memory stays bounded at any size: above PARTITION_BYTES of events, one streaming pass splits the events
    into ranges of task id (all pieces of a task land in one range), each range is folded alone, and the
    range outputs, each sorted by task id, are the tables' parts, in range order (so the parts, read in order,
    are sorted by task id: concatenating them into one file re-encoded every row, 7.5 s at 1M tasks).
    """
    _register(con, session_end_ms, job_ends_ms or {}, actor_names or {})
    total = sum(p.stat().st_size for p in task_files) if total_bytes is None else total_bytes
    ranges = max(1, min(256, -(-total // PARTITION_BYTES)))
    if ranges > 1:
        ranges = min(256, -(-ranges // RANGE_WORKERS) * RANGE_WORKERS)  # no range left to fold alone at the end
    if ranges == 1:
        # At most PARTITION_BYTES: counting the lines reads them once more, at little cost.
        listed = sql_list(task_files)
        lines = con.execute(f"SELECT count(*) FROM read_csv({listed}, {_LINES})").fetchone()[0] if task_files else 0
        return _fold_whole(con, out_dir, session_end_ms, task_files, lines), {}
    staged = out_dir / "ranges"
    shutil.rmtree(staged, ignore_errors=True)  # an earlier attempt's (see tables._tasks)
    started = time.monotonic()
    # Each range's buffered lines are flushed to its file every SPLIT_FLUSH_ROWS: DuckDB's default (524,288 rows
    # per range and thread) held 900 MiB at 1M tasks; this holds 630 and is faster.
    con.execute(f"SET partitioned_write_flush_threshold = {SPLIT_FLUSH_ROWS}")
    lines = con.execute(f"""
        COPY (SELECT line, coalesce((('0x' || substr(hex(try(from_base64(regexp_extract(line, '{_TASK_ID}', 1)))),
                                                     1, 2))::INTEGER * {ranges}) // 256, 0) AS part
              FROM read_csv({sql_list(task_files)}, {_LINES}))
        TO {_sql_path(staged)} (FORMAT csv, PARTITION_BY (part), {_AS_LINES}, OVERWRITE_OR_IGNORE true)
    """).fetchone()[0]
    con.execute("RESET partitioned_write_flush_threshold")
    parts = [p for p in range(ranges) if any((staged / f"part={p}").glob("*.csv"))]
    log.info("task events split into %d ranges of task id in %.1fs", len(parts), time.monotonic() - started)
    if not parts:  # no line was a task event
        shutil.rmtree(staged, ignore_errors=True)
        return _fold_whole(con, out_dir, session_end_ms, [], lines), {}
    started = time.monotonic()
    task_parts = [out_dir / part_file(TASKS, i) for i in range(len(parts))]
    profile_parts = [out_dir / part_file(PROFILE_EVENTS, i) for i in range(len(parts))]

    def fold_range(i: int) -> dict[str, int]:
        # Its own cursor (its own temp tables): a range has too few rows for DuckDB to spread one query over
        # both cores, so ranges are folded side by side instead, within the connection's one memory limit.
        # Each on one thread, its own (SET threads = 1: the cursors' calling threads do the work): with the
        # database's threads shared by RANGE_WORKERS queries at once, 16 ranges of a 1M-task session took
        # 6.2 s, against 4.4 s so.
        cur = con.cursor()
        try:
            files = sorted((staged / f"part={parts[i]}").glob("*.csv"))
            return _fold(cur, task_parts[i], profile_parts[i], session_end_ms, f"({_events_select(files)})")
        finally:
            cur.close()

    counts = {"tasks": 0, "failed_tasks": 0, "task_events": 0, "task_lines": lines}
    con.execute("SET threads = 1")
    try:
        with ThreadPoolExecutor(max_workers=RANGE_WORKERS) as pool:
            for folded in pool.map(fold_range, range(len(parts))):
                for k, v in folded.items():
                    counts[k] += v
    finally:
        con.execute("RESET threads")
    log.info("%d ranges folded in %.1fs", len(parts), time.monotonic() - started)
    shutil.rmtree(staged, ignore_errors=True)  # not a table: it would stay in the local cache beside them
    return counts, {TASKS.name: [p.name for p in task_parts], PROFILE_EVENTS.name: [p.name for p in profile_parts]}


def _fold_whole(
    con: duckdb.DuckDBPyConnection, out_dir: Path, session_end_ms: int | None, files: list[Path], lines: int
) -> dict[str, int]:
    """The events of `files` in one fold (none: empty tables), with the lines read counted as `lines`."""
    if files:
        source = f"({_events_select(files)})"
    else:
        con.execute(_EMPTY_EVENTS)
        source = "t_ev"
    counts = _fold(con, out_dir / TASKS.file, out_dir / PROFILE_EVENTS.file, session_end_ms, source)
    return {**counts, "task_lines": lines}


def _register(
    con: duckdb.DuckDBPyConnection, session_end_ms: int | None, job_ends_ms: dict[str, int], actor_names: dict[str, str]
) -> None:
    """The jobs whose tasks Ray's GCS marked failed at the job's end, and the actors' names, as tables."""
    marked = {
        job: end
        for job, end in job_ends_ms.items()
        if end and (session_end_ms is None or end + JOB_DONE_DELAY_MS <= session_end_ms)
    }
    con.execute("CREATE OR REPLACE TABLE t_job_ends (job_id VARCHAR, end_ms DOUBLE)")
    if marked:
        con.executemany("INSERT INTO t_job_ends VALUES (?, ?)", [[j, float(e)] for j, e in marked.items()])
    con.execute("CREATE OR REPLACE TABLE t_actor_names (actor_id VARCHAR, name VARCHAR)")
    named = [[a, n] for a, n in actor_names.items() if a and n]
    if named:
        con.executemany("INSERT INTO t_actor_names VALUES (?, ?)", named)
    # The caller's worker_logs is registered on its connection only: copied where the range folds' cursors see it.
    con.execute("CREATE OR REPLACE TABLE t_worker_logs AS SELECT * FROM worker_logs")


def _fold(
    con: duckdb.DuckDBPyConnection,
    tasks_out: Path,
    profile_out: Path,
    session_end_ms: int | None,
    source: str = "t_ev",
) -> dict[str, int]:
    """Fold the events of `source` (a table of _EMPTY_EVENTS's columns, or a parenthesized SELECT of them such as
    _events_select's) into the two tables; a table named t_ev is dropped.

    One aggregation makes a row per attempt (t_att) and both tables are rendered from it: the plan of separate
    state, timeline, profile and field aggregates joined back together took a quarter longer (4.7 s against 3.7 s
    for a 100k-task session's events in one fold), most of it in materializing and joining wide nested rows.
    """
    end = "NULL::DOUBLE" if session_end_ms is None else f"{float(session_end_ms)}"
    # One stamp per state, as Ray's task store keeps it: every report's transitions are assigned into the
    # attempt's state_ts_ns map and merged into the stored attempt, so a state reported twice keeps its later
    # report (ray/dashboard/modules/task_events/ray_event_converter.py `_convert_task_lifecycle_event`,
    # task_event_storage.py `_update_existing`). One reporter stamps a state's reports in order: the later report
    # is the later stamp. A state code Ray may add later is not read (as it has no name here).
    stamps = ", ".join(f"max(states['{code}']) AS s{code}" for code in _CODES)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE t_att AS
        SELECT *, {_hex("tid")} AS task_id FROM (
        SELECT tid, attempt, count(*) AS events,
               arg_max(job, ts) FILTER (WHERE coalesce(job, '') <> '') AS job,
               arg_max(info, ts) FILTER (WHERE info IS NOT NULL) AS info,
               arg_max(node, ts) FILTER (WHERE node IS NOT NULL) AS node,
               arg_max(worker, ts) FILTER (WHERE worker IS NOT NULL) AS worker,
               arg_max(pid, ts) FILTER (WHERE pid IS NOT NULL) AS pid,
               arg_max(error_info, ts) FILTER (WHERE error_info IS NOT NULL) AS error_info,
               -- Ray merges each report's log info field by field (ray_event_converter._convert_task_log_info
               -- copies only the fields set; TaskLogInfo's fields all have presence): paths and start offsets come
               -- when a task starts, end offsets later, and a field no report set is absent from the answer.
               CASE WHEN count(log_info) > 0 THEN struct_pack({_LOG_INFO_LATEST}) END AS log_info,
               arg_max(debugger_paused, ts) FILTER (WHERE debugger_paused IS NOT NULL) AS debugger_paused,
               -- An attempt's profile events come from the worker that ran it; a batch delivered twice is one.
               any_value(component_type) FILTER (WHERE len(profile) > 0) AS component_type,
               any_value(component_id) FILTER (WHERE len(profile) > 0) AS component_id,
               any_value(node_ip) FILTER (WHERE len(profile) > 0) AS node_ip,
               list_distinct(flatten(list(profile) FILTER (WHERE len(profile) > 0))) AS profile,
               {stamps}
        FROM {source} GROUP BY tid, attempt)
    """)
    if source == "t_ev":
        con.execute("DROP TABLE t_ev")
    con.execute(f"""
        COPY (SELECT task_id, attempt AS attempt_number, component_type, component_id,
                     node_ip AS node_ip_address, e.event_name AS event_name,
                     TRY_CAST(e.start_time AS BIGINT) / 1e6 AS start_time,
                     TRY_CAST(e.end_time AS BIGINT) / 1e6 AS end_time, e.extra_data AS extra_data
              FROM (SELECT task_id, attempt, component_type, {_hex("component_id")} AS component_id, node_ip,
                           unnest(profile) AS e
                    FROM t_att WHERE len(profile) > 0)
              ORDER BY task_id, attempt_number, start_time)
        TO {_sql_path(profile_out)} (FORMAT parquet, COMPRESSION zstd)
    """)
    con.execute(f"""
        COPY ({_tasks_select(end)})
        TO {_sql_path(tasks_out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})
    """)
    events = con.execute("SELECT coalesce(sum(events), 0) FROM t_att").fetchone()[0]
    con.execute("DROP TABLE t_att")
    tasks, failed = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE state = 'FAILED') FROM read_parquet({_sql_path(tasks_out)})"
    ).fetchone()
    return {"tasks": tasks, "failed_tasks": failed, "task_events": int(events)}


_CODES = sorted(TASK_STATUS)
_NAMES = "[" + ", ".join(f"'{TASK_STATUS[code]}'" for code in _CODES) + "]"  # by code + 1: codes are 0..n-1
assert _CODES == list(range(len(_CODES))), "a state's name is looked up by its code as a list index"


def _state(code: str) -> str:
    return f"coalesce({_NAMES}[{code} + 1], 'NIL')"


# The record's task_log_info (rendered at query time, historyserver/queries/task_records.py): the two paths (the
# worker's files when the events name none), then the offsets some report set; one no report set stays NULL (left
# out of the record, as Ray leaves it).
_LOG_INFO_STRUCT = (
    "CASE WHEN r.log_info IS NULL THEN NULL ELSE {"
    "'stdout_file': coalesce(nullif(r.log_info.stdout_file, ''), w.out_file), "
    "'stderr_file': coalesce(nullif(r.log_info.stderr_file, ''), w.err_file), "
    + ", ".join(
        f"'{f}': TRY_CAST(r.log_info.{f} AS BIGINT)"
        for f in ("stdout_start", "stdout_end", "stderr_start", "stderr_end")
    )
    + "} END"
)


def _tasks_select(end: str) -> str:
    """The tasks table's rows from t_att: each attempt's state, times and the typed fields of its record (which a
    query renders as Ray's state API answers it: historyserver/queries/task_records.py); `end` is the session's end
    (ms, SQL), NULL while it lives.

    No record is rendered here: to_json of every attempt (and its profile events again) was a third of a first
    open's range folds (100k tasks: 8 ranges in 2.3-2.9 s with it, 1.5-1.7 s with these columns instead)."""
    stamped = "[" + ", ".join(f"{{'ns': s{code}, 'code': {code}}}" for code in _CODES) + "]"
    error_message = (
        f"CASE WHEN r.unfinished AND r.error_message IS NULL THEN replace('{UNFINISHED_NOTE}', '{{state}}', r.state) "
        "ELSE r.error_message END"
    )
    return f"""
        WITH s AS (
            -- The states seen, in the order they happened (a tie in order of code, as list_sort orders the structs).
            SELECT *, list_sort(list_filter({stamped}, x -> x.ns IS NOT NULL)) AS seen,
                   {_hex("job")} AS job_id, {_hex("info.actor_id")} AS actor_id
            FROM t_att
        ), a AS (
            -- The state: the later of FINISHED and FAILED if either was seen, else the latest seen.
            SELECT *, CASE WHEN s11 IS NULL AND s12 IS NULL THEN seen[-1].code
                           WHEN s11 IS NULL OR s12 >= s11 THEN 12 ELSE 11 END AS state_code,
                   (coalesce(s1, seen[1].ns) // 1000000)::DOUBLE AS creation_ms,
                   (greatest(s11, s12) // 1000000)::DOUBLE AS end_ms
            FROM s
        ), r AS (
            SELECT a.task_id, a.attempt AS attempt_number,
               -- A task's name is its spec's (TaskSpecification::GetName); the export events carry only the
               -- function, and CoreWorker::CreateActor (src/ray/core_worker/core_worker.cc) names a named actor's
               -- creation task "<actor name>:<CallString>", CallString being its func_or_class_name.
               coalesce(a.info.name,
                        CASE WHEN an.name IS NOT NULL
                             THEN an.name || ':' || a.info.func_or_class_name END,
                        a.info.func_or_class_name) AS name,
               CASE WHEN j.end_ms IS NOT NULL THEN 'FAILED' ELSE {_state("a.state_code")} END AS state,
               a.job_id, a.actor_id,
               -- A driver's export events may carry no task_info (only its profile events and FINISHED): its id,
               -- TaskID::ForDriverTask, still says what it is, and Ray's task list and summaries leave it out.
               coalesce(a.info.type,
                        CASE WHEN a.info IS NULL AND starts_with(a.task_id, '{DRIVER_TASK_PREFIX}')
                             THEN 'DRIVER_TASK' END,
                        'NORMAL_TASK') AS type,
               a.info.func_or_class_name AS func_or_class_name,
               {_hex("a.info.parent_task_id")} AS parent_task_id, {_hex("a.node")} AS node_id,
               {_hex("a.worker")} AS worker_id, a.pid AS worker_pid,
               CASE WHEN j.end_ms IS NOT NULL THEN '{JOB_END_ERROR_TYPE}'
                    ELSE json_extract_string(a.error_info, '$.error_type') END AS error_type,
               coalesce(a.info.language, 'PYTHON') AS language,
               coalesce(TRY_CAST(a.info.required_resources AS MAP(VARCHAR, DOUBLE)), MAP {{}}) AS required_resources,
               a.info.runtime_env_info AS runtime_env_info,
               {_hex("a.info.placement_group_id")} AS placement_group_id,
               list_concat(
                   CASE WHEN len(a.seen) > 0 THEN list_transform(a.seen, x -> {{
                       'state': {_NAMES}[x.code + 1], 'created_ms': (x.ns // 1000000)::DOUBLE}}) END,
                   CASE WHEN j.end_ms IS NOT NULL THEN [{{'state': 'FAILED', 'created_ms': j.end_ms}}] END) AS events,
               a.creation_ms AS creation_time_ms, (a.s8 // 1000000)::DOUBLE AS start_time_ms,
               (a.s2 // 1000000)::DOUBLE AS pending_node_time_ms, (a.s5 // 1000000)::DOUBLE AS submitted_time_ms,
               coalesce(a.end_ms, j.end_ms,
                        CASE WHEN {_state("a.state_code")} NOT IN ('FINISHED', 'FAILED') THEN {end} END) AS end_time_ms,
               a.end_ms IS NULL AND j.end_ms IS NULL AND {end} IS NOT NULL
                   AND {_state("a.state_code")} NOT IN ('FINISHED', 'FAILED') AS unfinished,
               a.log_info,
               CASE WHEN j.end_ms IS NOT NULL THEN replace('{JOB_END_NOTE}', '{{job_id}}', a.job_id)
                    ELSE regexp_replace(json_extract_string(a.error_info, '$.error_message'), '{_ANSI}', '', 'g')
               END AS error_message,
               a.debugger_paused AS is_debugger_paused, nullif(a.info.call_site, '') AS call_site,
               coalesce(a.info.label_selector, '{{}}'::JSON) AS label_selector
            FROM a
            -- IsTaskTerminated: FINISHED or FAILED among the states (end_ms); none at all counts as not terminated.
            LEFT JOIN t_job_ends j ON j.job_id = a.job_id AND a.end_ms IS NULL
            LEFT JOIN t_actor_names an ON an.actor_id = a.actor_id AND a.info.type = 'ACTOR_CREATION_TASK'
        )
            SELECT r.task_id, r.attempt_number, r.name, r.state, r.job_id, r.actor_id, r.type, r.func_or_class_name,
                   r.parent_task_id, r.node_id, r.worker_id, r.worker_pid, r.error_type, r.creation_time_ms,
                   r.start_time_ms, r.end_time_ms, r.pending_node_time_ms, r.submitted_time_ms, r.unfinished,
                   {error_message} AS error_message, r.language, r.required_resources, r.runtime_env_info,
                   r.placement_group_id, coalesce(r.events, []) AS events, {_LOG_INFO_STRUCT} AS task_log_info,
                   r.is_debugger_paused, r.call_site, r.label_selector
            FROM r LEFT JOIN t_worker_logs w ON w.node_id = r.node_id AND w.worker_id = r.worker_id
            ORDER BY r.task_id, r.attempt_number
    """
