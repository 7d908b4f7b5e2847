"""Task attempts and their profile events, folded from EXPORT_TASK files by DuckDB.

A session can hold millions of task events, so this fold runs as SQL over the staged files (spilling to disk
when needed) instead of as Python objects: memory stays bounded and both cores are used.
A task arrives in pieces (its owner's definition and state updates, its worker's RUNNING, log offsets and profile
events), so rows are merged by (task_id, attempt_number); the newest non-empty value of each field wins.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from historyserver.compaction.export_events import TASK_STATUS

_STATES = ", ".join(f"({code}, '{name}')" for code, name in TASK_STATUS.items())
_PROFILE_EVENTS = '[{"event_name":"VARCHAR","start_time":"VARCHAR","end_time":"VARCHAR","extra_data":"VARCHAR"}]'
_ANSI = r"\x1b\[[0-9;]*[A-Za-z]"


def _hex(col: str) -> str:
    """Ray's REST ids are lowercase hex of the binary id that events carry as base64; empty means absent."""
    return f"CASE WHEN coalesce({col}, '') = '' THEN NULL ELSE lower(hex(try(from_base64({col})))) END"


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


UNFINISHED_NOTE = "Unfinished: the cluster ended while this task was {state}; it never reported a final state."


def fold_tasks(con: duckdb.DuckDBPyConnection, task_files: list[Path], out_dir: Path,
               session_end_ms: int | None = None) -> dict[str, int]:
    """Write tasks.parquet and profile_events.parquet from the staged EXPORT_TASK files; returns counts.

    With session_end_ms (a closed session), a task without a final state ends with the cluster: it keeps its
    last known state, and gets the session's end as its end time and a note as its error message.
    """
    end = "NULL::DOUBLE" if session_end_ms is None else f"{float(session_end_ms)}"
    if task_files:
        files = "[" + ", ".join(_sql_path(p) for p in task_files) + "]"
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE t_ev AS
            SELECT json_extract_string(d, '$.task_id') AS tid, coalesce(TRY_CAST(json_extract_string(d, '$.attempt_number') AS INTEGER), 0) AS attempt,
                   json_extract_string(d, '$.job_id') AS job, json_extract(d, '$.task_info') AS info, json_extract(d, '$.state_updates') AS su,
                   json_extract(d, '$.profile_events') AS pe, coalesce(ts, 0) AS ts
            FROM (SELECT event_data AS d, "timestamp" AS ts, source_type
                  FROM read_json({files}, format = 'newline_delimited', ignore_errors = true,
                                 columns = {{source_type: 'VARCHAR', "timestamp": 'BIGINT', event_data: 'JSON'}}))
            WHERE source_type = 'EXPORT_TASK' AND coalesce(json_extract_string(d, '$.task_id'), '') <> ''
        """)
    else:
        con.execute("""CREATE OR REPLACE TEMP TABLE t_ev (tid VARCHAR, attempt INTEGER, job VARCHAR, info JSON,
                       su JSON, pe JSON, ts BIGINT)""")
    con.execute(f"CREATE OR REPLACE TEMP TABLE t_state_names AS SELECT * FROM (VALUES {_STATES}) s(code, name)")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE t_states AS
        SELECT tid, attempt, TRY_CAST(e.key AS INTEGER) AS code, min(e.value) AS ns
        FROM (SELECT tid, attempt, unnest(map_entries(TRY_CAST(json_extract(su, '$.state_ts_ns') AS MAP(VARCHAR, BIGINT)))) AS e
              FROM t_ev WHERE json_extract(su, '$.state_ts_ns') IS NOT NULL)
        GROUP BY ALL
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE t_timeline AS
        SELECT tid, attempt,
               list({'state': n.name, 'created_ms': (s.ns // 1000000)::DOUBLE} ORDER BY s.ns, s.code) AS events,
               coalesce(arg_max(s.code, s.ns) FILTER (WHERE s.code IN (11, 12)),
                        arg_max(s.code, s.ns::HUGEINT * 100 + s.code)) AS state_code,
               (coalesce(min(s.ns) FILTER (WHERE s.code = 1), min(s.ns)) // 1000000)::DOUBLE AS creation_ms,
               (min(s.ns) FILTER (WHERE s.code = 8) // 1000000)::DOUBLE AS start_ms,
               (max(s.ns) FILTER (WHERE s.code IN (11, 12)) // 1000000)::DOUBLE AS end_ms
        FROM t_states s JOIN t_state_names n USING (code)
        GROUP BY ALL
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE t_prof AS
        SELECT DISTINCT tid, attempt, json_extract_string(pe, '$.component_type') AS component_type,
               json_extract_string(pe, '$.component_id') AS component_id, json_extract_string(pe, '$.node_ip_address') AS node_ip, unnest(
                   json_transform(json_extract(pe, '$.events'), '""" + _PROFILE_EVENTS + """')) AS e
        FROM t_ev WHERE pe IS NOT NULL
    """)
    con.execute(f"""
        COPY (SELECT {_hex('tid')} AS task_id, attempt AS attempt_number, component_type,
                     {_hex('component_id')} AS component_id, node_ip AS node_ip_address, e.event_name AS event_name,
                     TRY_CAST(e.start_time AS BIGINT) / 1e6 AS start_time, TRY_CAST(e.end_time AS BIGINT) / 1e6 AS end_time,
                     e.extra_data AS extra_data
              FROM t_prof ORDER BY task_id, attempt_number, start_time)
        TO {_sql_path(out_dir / 'profile_events.parquet')} (FORMAT parquet, COMPRESSION zstd)
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE t_agg AS
        SELECT tid, attempt,
               arg_max(job, ts) FILTER (WHERE coalesce(job, '') <> '') AS job,
               arg_max(info, ts) FILTER (WHERE info IS NOT NULL) AS info,
               arg_max(json_extract_string(su, '$.node_id'), ts) FILTER (WHERE coalesce(json_extract_string(su, '$.node_id'), '') <> '') AS node,
               arg_max(json_extract_string(su, '$.worker_id'), ts) FILTER (WHERE coalesce(json_extract_string(su, '$.worker_id'), '') <> '') AS worker,
               arg_max(TRY_CAST(json_extract_string(su, '$.worker_pid') AS BIGINT), ts) FILTER (WHERE json_extract_string(su, '$.worker_pid') IS NOT NULL) AS pid,
               arg_max(json_extract(su, '$.error_info'), ts) FILTER (WHERE json_extract(su, '$.error_info') IS NOT NULL) AS error_info,
               arg_max(json_extract(su, '$.task_log_info'), ts) FILTER (WHERE json_extract(su, '$.task_log_info') IS NOT NULL) AS log_info,
               arg_max(TRY_CAST(json_extract_string(su, '$.is_debugger_paused') AS BOOLEAN), ts)
                   FILTER (WHERE json_extract_string(su, '$.is_debugger_paused') IS NOT NULL) AS debugger_paused
        FROM t_ev GROUP BY ALL
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE t_prof_meta AS
        SELECT tid, attempt, any_value(component_type) AS component_type, any_value(component_id) AS component_id,
               any_value(node_ip) AS node_ip,
               list({'start_time': TRY_CAST(e.start_time AS BIGINT) / 1e6, 'end_time': TRY_CAST(e.end_time AS BIGINT) / 1e6,
                     'extra_data': CASE WHEN coalesce(e.extra_data, '') = '' THEN '{}'::JSON
                                        ELSE coalesce(TRY_CAST(e.extra_data AS JSON),
                                                      to_json({'raw': e.extra_data})) END,
                     'event_name': e.event_name} ORDER BY TRY_CAST(e.start_time AS BIGINT)) AS events
        FROM t_prof GROUP BY ALL
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE t_rows AS
        SELECT {_hex('a.tid')} AS task_id, a.attempt AS attempt_number,
               coalesce(json_extract_string(a.info, '$.name'), json_extract_string(a.info, '$.func_or_class_name')) AS name,
               coalesce(n.name, 'NIL') AS state, {_hex('a.job')} AS job_id, {_hex("json_extract_string(a.info, '$.actor_id')")} AS actor_id,
               coalesce(json_extract_string(a.info, '$.type'), 'NORMAL_TASK') AS type, json_extract_string(a.info, '$.func_or_class_name') AS func_or_class_name,
               {_hex("json_extract_string(a.info, '$.parent_task_id')")} AS parent_task_id, {_hex('a.node')} AS node_id,
               {_hex('a.worker')} AS worker_id, a.pid AS worker_pid, json_extract_string(a.error_info, '$.error_type') AS error_type,
               coalesce(json_extract_string(a.info, '$.language'), 'PYTHON') AS language,
               coalesce(TRY_CAST(json_extract(a.info, '$.required_resources') AS MAP(VARCHAR, DOUBLE)), MAP {{}}) AS required_resources,
               json_extract(a.info, '$.runtime_env_info') AS runtime_env_info,
               {_hex("json_extract_string(a.info, '$.placement_group_id')")} AS placement_group_id,
               t.events, p.component_type, {_hex('p.component_id')} AS component_id, p.node_ip,
               p.events AS profile_events,
               t.creation_ms AS creation_time_ms, t.start_ms AS start_time_ms,
               coalesce(t.end_ms, CASE WHEN coalesce(n.name, 'NIL') NOT IN ('FINISHED', 'FAILED') THEN {end} END)
                   AS end_time_ms,
               t.end_ms IS NULL AND {end} IS NOT NULL AND coalesce(n.name, 'NIL') NOT IN ('FINISHED', 'FAILED')
                   AS unfinished,
               a.log_info, regexp_replace(json_extract_string(a.error_info, '$.error_message'), '{_ANSI}', '', 'g') AS error_message,
               a.debugger_paused AS is_debugger_paused, nullif(json_extract_string(a.info, '$.call_site'), '') AS call_site,
               coalesce(json_extract(a.info, '$.label_selector'), '{{}}'::JSON) AS label_selector
        FROM t_agg a
        LEFT JOIN t_timeline t USING (tid, attempt)
        LEFT JOIN t_state_names n ON n.code = t.state_code
        LEFT JOIN t_prof_meta p USING (tid, attempt)
    """)
    con.execute(f"""
        COPY (
            SELECT r.task_id, r.attempt_number, r.name, r.state, r.job_id, r.actor_id, r.type, r.func_or_class_name,
                   r.parent_task_id, r.node_id, r.worker_id, r.worker_pid, r.error_type, r.creation_time_ms,
                   r.start_time_ms, r.end_time_ms, r.unfinished,
                   to_json({{
                       task_id: r.task_id, attempt_number: r.attempt_number, name: r.name, state: r.state,
                       job_id: r.job_id, actor_id: r.actor_id, type: r.type, func_or_class_name: r.func_or_class_name,
                       parent_task_id: r.parent_task_id, node_id: r.node_id, worker_id: r.worker_id,
                       worker_pid: r.worker_pid, error_type: r.error_type, language: r.language,
                       required_resources: r.required_resources, runtime_env_info: r.runtime_env_info,
                       placement_group_id: r.placement_group_id, events: coalesce(r.events, []),
                       profiling_data: CASE WHEN r.profile_events IS NULL THEN NULL ELSE {{
                           component_type: r.component_type, component_id: r.component_id,
                           node_ip_address: r.node_ip, events: r.profile_events}} END,
                       creation_time_ms: r.creation_time_ms, start_time_ms: r.start_time_ms,
                       end_time_ms: r.end_time_ms,
                       task_log_info: CASE WHEN r.log_info IS NULL THEN NULL ELSE {{
                           stdout_file: coalesce(nullif(json_extract_string(r.log_info, '$.stdout_file'), ''), w.out_file),
                           stderr_file: coalesce(nullif(json_extract_string(r.log_info, '$.stderr_file'), ''), w.err_file),
                           stdout_start: coalesce(TRY_CAST(json_extract_string(r.log_info, '$.stdout_start') AS BIGINT), 0),
                           stdout_end: coalesce(TRY_CAST(json_extract_string(r.log_info, '$.stdout_end') AS BIGINT), 0),
                           stderr_start: coalesce(TRY_CAST(json_extract_string(r.log_info, '$.stderr_start') AS BIGINT), 0),
                           stderr_end: coalesce(TRY_CAST(json_extract_string(r.log_info, '$.stderr_end') AS BIGINT), 0)}} END,
                       error_message: CASE WHEN r.unfinished AND r.error_message IS NULL
                           THEN replace('{UNFINISHED_NOTE}', '{{state}}', r.state) ELSE r.error_message END,
                       is_debugger_paused: r.is_debugger_paused,
                       call_site: r.call_site, label_selector: r.label_selector,
                       fallback_strategy: {{options: []::VARCHAR[]}}
                   }}) AS record
            FROM t_rows r LEFT JOIN worker_logs w ON w.node_id = r.node_id AND w.worker_id = r.worker_id
            ORDER BY r.creation_time_ms NULLS LAST, r.task_id, r.attempt_number
        ) TO {_sql_path(out_dir / 'tasks.parquet')} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)
    """)
    tasks, failed = con.execute("SELECT count(*), count(*) FILTER (WHERE state = 'FAILED') FROM t_rows").fetchone()
    events = con.execute("SELECT count(*) FROM t_ev").fetchone()[0]
    for table in ("t_ev", "t_states", "t_timeline", "t_prof", "t_agg", "t_prof_meta", "t_rows"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return {"tasks": tasks, "failed_tasks": failed, "task_events": events}
