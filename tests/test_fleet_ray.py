"""`rayhistory compact --ray-address` and `rayhistory sql --ray-address` on a real local Ray 2.60 cluster: the same
tables as compaction on this machine, served by a history server that then compacts nothing, and the same answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from archive.storage.local import LocalStore
from benchmarks.fleet_sessions import write_fleet
from rayhistory.local_ray import LocalRayCluster
from tests.fleet_helpers import OOM_QUESTION, rayhistory, tables_of
from tests.helpers import client_for

COUNT = 9


@pytest.fixture(scope="module")
def ray_cluster():
    ray = LocalRayCluster(num_cpus=2)
    try:
        ray.start()
        ray.wait_ready()
        yield ray
    finally:
        ray.stop()
        ray.kill()


@pytest.fixture(scope="module")
def fleets(tmp_path_factory, ray_cluster) -> tuple[Path, Path, list]:
    """One fleet archived twice: compacted on this machine, and as Ray tasks."""
    root = tmp_path_factory.mktemp("fleets")
    here, on_ray = root / "here", root / "ray"
    sessions = write_fleet(LocalStore(here), COUNT, oom_every=4)  # sessions 3 and 7 failed with OOM
    shutil.copytree(here, on_ray)
    local = rayhistory("compact", "--archive", str(here))
    assert local.returncode == 0, local.stderr
    fanned = rayhistory("compact", "--archive", str(on_ray), "--ray-address", ray_cluster.address, env=ray_cluster.env)
    assert fanned.returncode == 0, fanned.stderr
    assert f"compacting {COUNT} as Ray tasks on {ray_cluster.address}" in fanned.stderr
    assert f"{COUNT} compacted, 0 failed" in fanned.stderr
    return here, on_ray, sessions


def test_ray_tasks_write_the_tables_compaction_here_writes(fleets):
    here, on_ray, sessions = fleets
    for s in sessions:
        assert tables_of(on_ray, s.ref) == tables_of(here, s.ref), s.ref.id


def test_the_server_serves_tables_compacted_elsewhere_without_compacting(fleets, tmp_path):
    _, on_ray, sessions = fleets
    oom = next(s for s in sessions if s.oom)
    with client_for(str(on_ray), tmp_path / "cache") as c:
        r = c.get(
            f"/sessions/{oom.ref.id}/api/v0/tasks",
            params={"filter_keys": "state", "filter_predicates": "=", "filter_values": "FAILED", "detail": "1"},
        )
        assert r.status_code == 200, r.text
        [failed] = r.json()["data"]["result"]["result"]
        assert failed["error_type"] == "OUT_OF_MEMORY" and failed["job_id"] == oom.failed_job
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(c.get("/metrics").text)
            for s in family.samples
        }
    assert samples[("rayhistory_server_compacted_downloads_total", ())] == 1
    assert samples.get(("rayhistory_server_compactions_total", (("outcome", "ok"),)), 0) == 0
    assert samples.get(("rayhistory_server_compactions_total", (("outcome", "failed"),)), 0) == 0


def test_the_fleet_question_has_one_answer_with_and_without_ray(fleets, ray_cluster):
    _, on_ray, sessions = fleets
    expected = sorted((s.ref.namespace, s.ref.cluster, s.ref.id, s.failed_job) for s in sessions if s.oom)
    local = rayhistory("sql", OOM_QUESTION, "--archive", str(on_ray), "--format", "json")
    fanned = rayhistory(
        "sql",
        OOM_QUESTION,
        "--archive",
        str(on_ray),
        "--format",
        "json",
        "--ray-address",
        ray_cluster.address,
        "--sessions-per-task",
        "2",
        env=ray_cluster.env,
    )
    assert local.returncode == 0, local.stderr
    assert fanned.returncode == 0, fanned.stderr
    rows = [tuple(r.values()) for r in json.loads(fanned.stdout)]
    assert rows == expected and len(expected) == 2  # the order too: ORDER BY applied again to the combined answer
    assert fanned.stdout == local.stdout


def test_per_session_aggregates_and_top_k_combine_over_ray(fleets, ray_cluster):
    _, on_ray, _ = fleets
    sql = (
        "SELECT session_id, count(*) AS failed FROM tasks WHERE state = 'FAILED' GROUP BY session_id "
        "ORDER BY session_id DESC LIMIT 3"
    )
    local = rayhistory("sql", sql, "--archive", str(on_ray), "--format", "csv")
    fanned = rayhistory(
        "sql",
        sql,
        "--archive",
        str(on_ray),
        "--format",
        "csv",
        "--ray-address",
        ray_cluster.address,
        "--sessions-per-task",
        "4",
        env=ray_cluster.env,
    )
    assert fanned.returncode == 0, fanned.stderr
    assert fanned.stdout == local.stdout and len(local.stdout.splitlines()) == 4
    whole = rayhistory(
        "sql",
        "SELECT count(*) FROM tasks",
        "--archive",
        str(on_ray),
        "--ray-address",
        ray_cluster.address,
        env=ray_cluster.env,
    )
    assert whole.returncode == 1 and "run it without --ray-address" in whole.stderr
