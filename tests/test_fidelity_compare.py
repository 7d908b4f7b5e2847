"""The fidelity harness's comparison (tests/fidelity_compare.py) itself: it must flag each of the seven differences
of issue 12 when fed the wrong answer, and let through only what its lists allow. Small records in Ray 2.60's
shapes, no cluster: the real comparison runs in tests/test_fidelity.py."""

from __future__ import annotations

import copy

from tests import fidelity_compare as fc

RECORDED_MS = 1_000_000.0
END_MS = 1_060_000.0


def ctx() -> fc.Context:
    return fc.Context(RECORDED_MS)


def tasks(*records: dict) -> dict:
    return {
        "result": True,
        "msg": "",
        "data": {"result": {"total": len(records), "num_after_truncation": len(records), "result": list(records)}},
    }


def task(**fields) -> dict:
    return {
        "task_id": "aa" * 24,
        "attempt_number": 0,
        "name": "square",
        "state": "FINISHED",
        "func_or_class_name": "square",
        "error_type": None,
        "error_message": None,
        "end_time_ms": 900_000.0,
        **fields,
    }


def summary(entries: dict) -> dict:
    cluster = {"summary": entries, "total_tasks": sum(sum(e["state_counts"].values()) for e in entries.values())}
    return {"result": True, "data": {"result": {"result": {"node_id_to_summary": {"cluster": cluster}}}}}


TASKS = "api/v0/tasks?detail=1&limit=10000"
SUMMARY = "api/v0/tasks/summarize"
JOB_END = "Job finishes (01000000) as driver exits. Marking all non-terminal tasks as failed."


def test_item_1_a_task_failed_at_its_jobs_end_must_be_archived_failed():
    live = tasks(task(state="FAILED", error_type="WORKER_DIED", error_message=JOB_END, end_time_ms=950_000.0))
    wrong = tasks(task(state="PENDING_NODE_ASSIGNMENT", end_time_ms=END_MS, error_message="Unfinished: ..."))
    paths = {d.path.rsplit("/", 1)[-1] for d in fc.compare(TASKS, live, wrong, ctx())}
    assert {"state", "error_type", "error_message", "end_time_ms"} <= paths
    assert fc.compare(TASKS, live, copy.deepcopy(live), ctx()) == []


def test_item_2_a_named_actors_creation_task_keeps_its_name():
    live_name = "my_acc:Accumulator.__init__"
    live = tasks(task(name=live_name, func_or_class_name="Accumulator.__init__"))
    wrong = tasks(task(name="Accumulator.__init__", func_or_class_name="Accumulator.__init__"))
    assert [d.path.rsplit("/", 1)[-1] for d in fc.compare(TASKS, live, wrong, ctx())] == ["name"]
    entry = {"func_or_class_name": live_name, "type": "ACTOR_CREATION_TASK", "state_counts": {"FINISHED": 1}}
    renamed = {**entry, "func_or_class_name": "Accumulator.__init__"}
    found = fc.compare(SUMMARY, summary({live_name: entry}), summary({"Accumulator.__init__": renamed}), ctx())
    assert any(live_name in d.path for d in found) and any("Accumulator.__init__/" in d.path for d in found)


def test_item_3_driver_tasks_stay_out_of_summaries():
    square = {"func_or_class_name": "square", "type": "NORMAL_TASK", "state_counts": {"FINISHED": 4}}
    driver = {"func_or_class_name": None, "type": "DRIVER_TASK", "state_counts": {"FINISHED": 1}}
    found = fc.compare(SUMMARY, summary({"square": square}), summary({"square": square, "null": driver}), ctx())
    assert any(d.path.startswith("data/result/result/node_id_to_summary/cluster/summary/null") for d in found)


def test_item_4_a_session_archived_after_the_fact_ends_when_ray_did():
    stopped_ms, collected_ms = 2_000_000.0, 2_000_000.0 + 3 * 86_400_000
    assert fc.session_end_problems(1_999_000.0, RECORDED_MS, stopped_ms) == []
    assert fc.session_end_problems(collected_ms, RECORDED_MS, stopped_ms)  # the collection time: days later
    assert fc.session_end_problems(RECORDED_MS - 5000, RECORDED_MS, stopped_ms)  # before it was seen running


def test_item_5_an_empty_log_file_ray_lists_must_be_listed():
    route = "api/v0/logs?node_id=" + "ab" * 28
    live = {"result": True, "data": {"result": {"raylet": ["raylet.err", "raylet.out"]}}}
    wrong = {"result": True, "data": {"result": {"raylet": ["raylet.out"]}}}
    assert [d.path for d in fc.compare(route, live, wrong, ctx())] == ["data/result/raylet/raylet.err"]
    later = {"result": True, "data": {"result": {"raylet": ["raylet.err", "raylet.out", "raylet.1.out"]}}}
    assert fc.compare(route, live, later, ctx()) == []  # a file created after the recording


def test_item_6_the_catalog_counts_every_node():
    nodes = [{"node_id": "a" * 56}, {"node_id": "b" * 56}]
    assert fc.catalog_problems({"nodes": 2}, nodes) == []
    assert fc.catalog_problems({"nodes": 1}, nodes)


def test_item_7_a_panel_series_prometheus_has_and_the_archive_lacks():
    expr = 'clamp_min(sum(ray_tasks{IsRetry!="0",State!~"FINISHED|FAILED"}) by (State), 0)'

    def matrix(*states: str) -> dict:
        return {"resultType": "matrix", "result": [{"metric": {"State": s}, "values": [[10, "0"]]} for s in states]}

    assert fc.panel_differences(expr, matrix("RUNNING"), matrix("RUNNING"), settled_from_s=0) == []
    found = fc.panel_differences(expr, matrix("RUNNING", "PENDING_ARGS_AVAIL"), matrix("RUNNING"), settled_from_s=0)
    assert found == ["series only in Prometheus: {'State': 'PENDING_ARGS_AVAIL'}"]
    # Once settled, a value differs too (task counts are not sampled statistics); a float is compared as Prometheus
    # writes it, so 1e-07 is not 0.0000001.
    other = {"resultType": "matrix", "result": [{"metric": {"State": "RUNNING"}, "values": [[10, "1"]]}]}
    assert fc.panel_differences(expr, matrix("RUNNING"), other, settled_from_s=0)
    tiny = {"resultType": "matrix", "result": [{"metric": {}, "values": [[10, "1e-07"]]}]}
    positional = {"resultType": "matrix", "result": [{"metric": {}, "values": [[10, "0.0000001"]]}]}
    assert fc.panel_differences("sum(ray_tasks)", tiny, positional, settled_from_s=0)


def test_live_only_statistics_are_allowed_and_nothing_else():
    route = "nodes?view=summary"

    def node(**fields) -> dict:
        raylet = {"nodeId": "c" * 56, "state": "ALIVE", "endTimeMs": "0", "nodeManagerPort": 4242}
        return {"result": True, "data": {"summary": [{"raylet": raylet, "cpu": 15.3, "mem": [1, 2], **fields}]}}

    live = node()
    dead = node(cpu=None, mem=None)
    dead["data"]["summary"][0]["raylet"].update(endTimeMs=str(END_MS), nodeManagerPort=None)
    assert fc.compare(route, live, dead, ctx()) == []  # psutil, ports: live-only; the node ended after the recording
    renamed = copy.deepcopy(dead)
    renamed["data"]["summary"][0]["hostname"] = "elsewhere"
    assert [d.path.rsplit("/", 1)[-1] for d in fc.compare(route, live, renamed, ctx())] == ["hostname"]


def test_the_rule_for_states_non_terminal_at_death():
    running = task(state="RUNNING", end_time_ms=None)
    kept = task(state="RUNNING", end_time_ms=END_MS, error_message="Unfinished: the cluster ended while ...")
    failed = task(state="FAILED", end_time_ms=END_MS, error_type="WORKER_DIED", error_message="died at shutdown")
    assert fc.compare(TASKS, tasks(running), tasks(kept), ctx()) == []  # ended with the cluster
    assert fc.compare(TASKS, tasks(running), tasks(failed), ctx()) == []  # Ray recorded its end at shutdown
    assert fc.compare(TASKS, tasks(running), tasks(task(state="RUNNING", end_time_ms=None)), ctx())  # running forever
    assert fc.compare(TASKS, tasks(running), tasks(task(state="PENDING_ARGS_AVAIL", end_time_ms=END_MS)), ctx())
    early = task(state="FAILED", end_time_ms=RECORDED_MS - 60_000)  # ended before it was seen running
    assert fc.compare(TASKS, tasks(running), tasks(early), ctx())
    # The rule frees only the end-of-life fields: the name must still match.
    assert fc.compare(TASKS, tasks(running), tasks({**kept, "name": "other"}), ctx())
    # A terminal task is not touched by the rule at all.
    done = task()
    assert fc.compare(TASKS, tasks(done), tasks({**done, "end_time_ms": END_MS}), ctx())


def test_order_counts_only_where_ray_defines_it():
    a, b = task(), task(task_id="bb" * 24, name="cube")
    assert fc.compare(TASKS, tasks(a, b), tasks(b, a), ctx())  # Ray sorts tasks by id
    retry = task(attempt_number=1)  # a task's attempts: in the order the GCS got their events, run by run
    assert fc.compare(TASKS, tasks(retry, a, b), tasks(a, retry, b), ctx()) == []
    events = [{"event_name": "task:execute", "start_time": 2.0}, {"event_name": "task::square", "start_time": 1.0}]
    with_events = task(profiling_data={"events": events})
    assert fc.compare(TASKS, tasks(with_events), tasks(task(profiling_data={"events": events[::-1]})), ctx()) == []


def test_known_gaps_are_narrow():
    """A known gap excuses its own fields only: a task Ray failed on its worker's death may differ in its end and
    error (GcsTaskManager::OnWorkerDead is not archived), not in its name; any other task must match exactly."""
    died = "Worker running the task (ab) died with exit_type: 3 with error_message: killed"
    live = task(state="FAILED", error_type="WORKER_DIED", error_message=died, end_time_ms=950_100.0)
    archived = task(state="FAILED", error_type="WORKER_DIED", error_message=JOB_END, end_time_ms=950_000.0)
    assert fc.compare(TASKS, tasks(live), tasks(archived), ctx()) == []
    assert fc.compare(TASKS, tasks(live), tasks({**archived, "name": "other"}), ctx())
    other = task(state="FAILED", error_type="TASK_EXECUTION_EXCEPTION", error_message="boom", end_time_ms=950_100.0)
    assert fc.compare(TASKS, tasks(other), tasks({**other, "error_message": JOB_END}), ctx())
    # A known gap of one event path does not excuse the other.
    route = "api/jobs/raysubmit_x"
    assert fc.compare(route, {"status": "RUNNING"}, {"result": False}, fc.Context(RECORDED_MS, "http")) == []
    assert fc.compare(route, {"status": "RUNNING"}, {"result": False}, fc.Context(RECORDED_MS, "files"))


def test_what_ray_wrote_after_the_recording():
    """A retry Ray created at shutdown (its worker killed), and the summary counts that shift with it: allowed
    for tasks that were not finished at the recording, and only for them."""
    running = task(task_id="cc" * 24, name="forever", func_or_class_name="forever", state="RUNNING", end_time_ms=None)
    died = {**running, "state": "FAILED", "end_time_ms": END_MS, "error_type": "WORKER_DIED"}
    retry = {**running, "attempt_number": 1, "state": "PENDING_NODE_ASSIGNMENT", "creation_time_ms": END_MS - 1000}
    context = fc.Context(RECORDED_MS, **fc.task_context([task(), running], [task(), died, retry], RECORDED_MS))
    assert context.late == 1 and context.unfinished >= {"forever"}
    live, archived = tasks(task(), running), tasks(task(), died, retry)
    archived["data"]["result"]["total"] = 3
    assert fc.compare(TASKS, live, archived, context) == []

    def summarize(counts: dict, total: int) -> dict:
        entries = {n: {"func_or_class_name": n, "type": "NORMAL_TASK", "state_counts": c} for n, c in counts.items()}
        body = summary(entries)
        body["data"]["result"]["total"] = total
        return body

    before = summarize({"square": {"FINISHED": 1}, "forever": {"RUNNING": 1}}, 2)
    after = summarize({"square": {"FINISHED": 1}, "forever": {"FAILED": 1, "PENDING_NODE_ASSIGNMENT": 1}}, 3)
    assert fc.compare(SUMMARY, before, after, context) == []
    wrong = summarize({"square": {"FAILED": 1}, "forever": {"FAILED": 1, "PENDING_NODE_ASSIGNMENT": 1}}, 3)
    assert fc.compare(SUMMARY, before, wrong, context)  # square was finished: its counts must hold
    assert fc.compare(SUMMARY, before, summarize({"square": {"FINISHED": 1}, "forever": {"RUNNING": 1}}, 4), context)
