"""A task attempt's record, as Ray's state API answers it (`ray list tasks --detail`, GET /api/v0/tasks), rendered
when asked: from the tasks table's typed columns and the attempt's rows of profile_events.

The build writes no JSON (historyserver/compaction/tasks_sql.py `_tasks_select`): rendering every attempt's record
there was a third of a first open's fold, while a page renders its own hundred (or Ray's 10,000 at most) in
milliseconds. The keys come in the order the build wrote them before (COMPACTION_VERSION 19), the answers byte for
byte the same (tests/test_export_events.py, tests/test_fidelity.py against a real Ray).
"""

from __future__ import annotations

# An attempt's profile events, sorted by start time (NULLS LAST, a tie by the rest of the event) as Ray's
# dashboard answers them; extra_data as JSON (empty: {}; text that is not JSON: {"raw": text}).
_PROFILE = """
    SELECT e.task_id, e.attempt_number, any_value(e.component_type) AS component_type,
           any_value(e.component_id) AS component_id, any_value(e.node_ip_address) AS node_ip_address,
           list_transform(list_sort(list({
               'key': e.start_time, 'e': {
                   'start_time': e.start_time, 'end_time': e.end_time,
                   'extra_data': CASE WHEN coalesce(e.extra_data, '') = '' THEN '{}'::JSON
                                      ELSE coalesce(TRY_CAST(e.extra_data AS JSON), to_json({'raw': e.extra_data})) END,
                   'event_name': e.event_name}})), x -> x.e) AS events
    FROM {profile} e SEMI JOIN page k ON k.task_id = e.task_id AND k.attempt_number = e.attempt_number
    WHERE {where}
    GROUP BY e.task_id, e.attempt_number
"""


def _offset(field: str) -> str:
    return f"""coalesce(',"{field}":' || t.task_log_info.{field}, '')"""


# The paths always (null when unknown), an offset only if some report set it: Ray leaves an unset one out.
_LOG_INFO = (
    "CASE WHEN t.task_log_info IS NULL THEN NULL ELSE ("
    """'{"stdout_file":' || coalesce(to_json(t.task_log_info.stdout_file), 'null')"""
    """ || ',"stderr_file":' || coalesce(to_json(t.task_log_info.stderr_file), 'null')"""
    + "".join(f" || {_offset(f)}" for f in ("stdout_start", "stdout_end", "stderr_start", "stderr_end"))
    + " || '}')::JSON END"
)

_RECORD = f"""to_json({{
    task_id: t.task_id, attempt_number: t.attempt_number, name: t.name, state: t.state, job_id: t.job_id,
    actor_id: t.actor_id, type: t.type, func_or_class_name: t.func_or_class_name, parent_task_id: t.parent_task_id,
    node_id: t.node_id, worker_id: t.worker_id, worker_pid: t.worker_pid, error_type: t.error_type,
    language: t.language, required_resources: t.required_resources, runtime_env_info: t.runtime_env_info,
    placement_group_id: t.placement_group_id, events: t.events,
    profiling_data: CASE WHEN p.events IS NULL THEN NULL ELSE {{
        component_type: p.component_type, component_id: p.component_id, node_ip_address: p.node_ip_address,
        events: p.events}} END,
    creation_time_ms: t.creation_time_ms, start_time_ms: t.start_time_ms, end_time_ms: t.end_time_ms,
    task_log_info: {_LOG_INFO}, error_message: t.error_message, is_debugger_paused: t.is_debugger_paused,
    call_site: t.call_site, label_selector: t.label_selector, fallback_strategy: {{options: []::VARCHAR[]}}
}})"""


def records_sql(page: str, profile: str = "profile_events", profile_where: str = "TRUE") -> str:
    """A query answering (task_id, attempt_number, record) for the tasks rows `page` selects (a SELECT of whole
    rows of the tasks table), sorted by task id and attempt. `profile`: the profile_events table (a name, or
    read_parquet(...) of its files); `profile_where`: a condition on its rows `e` that the page's hold (such as a
    range of task ids: the parts are sorted by task id, so it skips the row groups of other pages). The ? parameters
    of `page` come first, then those of `profile_where`."""
    profile_rows = _PROFILE.replace("{profile}", profile).replace("{where}", profile_where)
    return f"""
        WITH page AS ({page}), p AS ({profile_rows})
        SELECT t.task_id, t.attempt_number, {_RECORD} AS record
        FROM page t LEFT JOIN p ON p.task_id = t.task_id AND p.attempt_number = t.attempt_number
        ORDER BY t.task_id, t.attempt_number
    """
