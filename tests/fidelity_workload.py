"""The fidelity harness's Ray workload: everything at once, on two nodes (run by tests/fidelity_cluster.py).

`python fidelity_workload.py driver <dir>`: a driver that finishes, leaving tasks pending behind it. It runs
tasks that finish, one that fails, one that fails then succeeds on retry (IsRetry series), one on the worker node
(resource `fidelity_worker`), a named and an anonymous actor, an actor that fails in __init__, a placement group
used then removed and one that can never be placed (Ray removes it at the job's end); then it leaves a running
task, a task waiting for its argument and an infeasible task, and exits: Ray's GCS fails those at the job's end
(issue 12, item 1).

`python fidelity_workload.py job <dir>` (submitted as a job): still running when the cluster dies: a named
actor alive, a running task, a task waiting for its argument, a placement group that can never be placed. It
writes `<dir>/job-ready` once they are in place, then sleeps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

WORKER_RESOURCE = "fidelity_worker"  # only the worker node has it


@ray.remote
def square(x):
    print(f"square({x})")
    return x * x


@ray.remote(max_retries=0)
def fail():
    raise ValueError("failing on purpose")


@ray.remote(max_retries=2, retry_exceptions=True)
def fail_once(marker: str):
    """Fails on its first attempt, succeeds on the retry (the marker file says which attempt this is)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("first attempt")
        raise RuntimeError("first attempt fails, the retry succeeds")
    return "retried"


@ray.remote(resources={WORKER_RESOURCE: 1})
def on_worker_node():
    print("on the worker node")
    return ray.get_runtime_context().get_node_id()


# Tasks are told apart by their functions, not by `.options(name=...)`: Ray's export task events carry no task
# name (ExportTaskEventData.TaskInfoEntry has none), so on the export-file path a given name is not archived.
@ray.remote
def blocker():
    time.sleep(3600)


@ray.remote
def waits_for_blocker(_):
    return 0


@ray.remote(resources={"unobtainium": 1})
def infeasible():
    return 0


@ray.remote
def forever():
    time.sleep(3600)


@ray.remote
def waits_forever(_):
    return 0


@ray.remote
class Accumulator:
    def __init__(self):
        self.total = 0

    def add(self, n):
        self.total += n
        return self.total


@ray.remote
class BrokenInit:
    def __init__(self):
        raise RuntimeError("this actor fails in __init__")

    def ping(self):
        return "pong"


def _states(names: set[str]) -> dict[str, str]:
    from ray.util.state import list_tasks

    job = ray.get_runtime_context().get_job_id()
    tasks = list_tasks(filters=[("job_id", "=", job)], limit=10_000, raise_on_missing_output=False)
    return {t.name: t.state for t in tasks if t.name in names}


def _wait_states(want: dict[str, set[str]], timeout: float = 60) -> None:
    """Until each named task is in one of its states (the GCS sees task events about a second late)."""
    deadline = time.monotonic() + timeout
    while True:
        got = _states(set(want))
        if all(got.get(n) in s for n, s in want.items()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"tasks not in the expected states after {timeout}s: {got} (want {want})")
        time.sleep(0.3)


def driver(work: Path) -> None:
    ray.init(namespace="fidelity")
    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    try:
        ray.get(fail.remote())
        raise AssertionError("fail() succeeded")
    except ray.exceptions.RayTaskError:
        pass
    assert ray.get(fail_once.remote(str(work / "fail-once"))) == "retried"
    ray.get(on_worker_node.remote())

    named = Accumulator.options(name="my_acc").remote()
    assert ray.get([named.add.remote(1), named.add.remote(2)]) == [1, 3]
    anonymous = Accumulator.remote()
    assert ray.get(anonymous.add.remote(5)) == 5
    ray.kill(anonymous)
    broken = BrokenInit.remote()
    try:
        ray.get(broken.ping.remote())
        raise AssertionError("BrokenInit started")
    except ray.exceptions.RayActorError:
        pass

    used = placement_group([{"CPU": 1}], strategy="PACK", name="fidelity_pg")
    ray.get(used.ready(), timeout=60)
    ray.get(square.options(scheduling_strategy=PlacementGroupSchedulingStrategy(used)).remote(7))
    remove_placement_group(used)
    placement_group([{"CPU": 64}], strategy="STRICT_PACK", name="fidelity_pg_infeasible")  # never placed

    # Left behind when the driver exits: the GCS fails them at the job's end.
    waits_for_blocker.remote(blocker.remote())
    infeasible.remote()
    _wait_states(
        {
            "blocker": {"RUNNING"},
            "waits_for_blocker": {"PENDING_ARGS_AVAIL"},
            "infeasible": {"PENDING_NODE_ASSIGNMENT"},
        }
    )
    print("driver done", flush=True)


def job(work: Path) -> None:
    ray.init(namespace="fidelity")
    keeper = Accumulator.options(name="keeper").remote()
    assert ray.get(keeper.add.remote(1)) == 1
    waits_forever.remote(forever.remote())
    placement_group([{"CPU": 64}], name="fidelity_pg_pending")  # never placed; pending when the cluster dies
    _wait_states({"forever": {"RUNNING"}, "waits_forever": {"PENDING_ARGS_AVAIL"}})
    (work / "job-ready").write_text("ready")
    print("job ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    {"driver": driver, "job": job}[sys.argv[1]](Path(sys.argv[2]))
