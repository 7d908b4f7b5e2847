"""`rayhistory sls init` through the real SDK against the SLS test server (no SLS emulator exists;
tests/servers/sls_resources.py): creates what is missing, idempotently, shows and applies an index's difference,
plans without changing anything on --dry-run, and refuses a store of the wrong kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archive import sls_schema as schema
from tests.servers.sls import running_sls

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sls():
    with running_sls() as server:
        yield server


def init(sls, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "RAYHISTORY_"))}
    env.update(ALIBABA_CLOUD_ACCESS_KEY_ID=sls.access_key_id, ALIBABA_CLOUD_ACCESS_KEY_SECRET=sls.access_key_secret)
    env["RAYHISTORY_SLS_PROXY"] = sls.proxy  # settings from the same variables the collector reads
    return subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "sls", "init", "--endpoint", sls.endpoint, "--project", "p", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


ALL = ("--logstore", "ray-logs", "--events-logstore", "ray-events", "--metricstore", "ray-metrics")


def test_init_creates_everything_then_has_nothing_to_do(sls):
    done = init(sls, *ALL, "--ttl", "7", "--shards", "3")
    assert done.returncode == 0, done.stderr
    r = sls.resources
    assert {name for (_, name) in r.logstores} == {"ray-logs", "ray-events", "ray-metrics"}
    assert r.logstores[("p", "ray-logs")]["ttl"] == 7 and r.logstores[("p", "ray-logs")]["shardCount"] == 3
    assert r.is_metricstore("p", "ray-metrics") and not r.is_metricstore("p", "ray-events")
    assert ("p", "ray-metrics") not in r.indexes  # SLS manages a MetricStore's own index
    for name, spec in (("ray-logs", schema.logs_index()), ("ray-events", schema.events_index())):
        stored = r.indexes[("p", name)]
        assert schema.index_diff(stored, spec) == [], name
    events = r.indexes[("p", "ray-events")]["keys"]
    for key in ("func_name", "state", "event_type", "task_id", "job_id", "error_type"):  # SQL needs doc_value
        assert events[key]["doc_value"] is True and events[key]["type"] == "text", key
    logs = r.indexes[("p", "ray-logs")]["keys"]
    for key in (
        "level",
        "job_id",
        "component",
        "task_name",
        "actor_name",
        "message",
        "__tag__:node_id",
        "__tag__:file",
    ):
        assert logs[key]["doc_value"] is True, key  # facets, totals and regex mode's SQL (log search)
    assert logs["line"]["type"] == logs["offset"]["type"] == "long" and logs["__tag__:worker_id"]["doc_value"]
    assert logs["pid"]["type"] == "long" and r.indexes[("p", "ray-logs")]["line"]["token"] == schema.DEFAULT_TOKENS
    assert "prometheus/p/ray-metrics" in done.stdout  # where Grafana reads it
    calls = list(r.calls)
    again = init(sls, *ALL)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert r.calls == calls  # nothing created or updated twice


def test_an_existing_index_is_shown_its_difference_and_updated_keeping_its_own_keys(sls):
    assert init(sls, "--logstore", "ray-logs").returncode == 0
    index = sls.resources.indexes[("p", "ray-logs")]
    index["keys"]["level"]["doc_value"] = False
    del index["keys"]["__tag__:session"]
    index["keys"]["team"] = {"type": "text", "token": [","], "caseSensitive": False, "doc_value": True}
    plan = init(sls, "--logstore", "ray-logs", "--dry-run")
    assert plan.returncode == 0
    assert "~ level: doc_value False -> True" in plan.stdout and "+ __tag__:session" in plan.stdout
    assert "would update the index of ray-logs (2 changes)" in plan.stdout
    assert sls.resources.indexes[("p", "ray-logs")]["keys"]["level"]["doc_value"] is False  # dry run: unchanged
    done = init(sls, "--logstore", "ray-logs")
    assert done.returncode == 0 and "update the index of ray-logs" in done.stdout
    keys = sls.resources.indexes[("p", "ray-logs")]["keys"]
    assert keys["level"]["doc_value"] is True and "__tag__:session" in keys and "team" in keys


def test_dry_run_on_nothing_plans_everything_and_creates_nothing(sls):
    plan = init(sls, *ALL, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.count("would create") == 5  # 2 logstores, their 2 indexes, 1 MetricStore
    assert sls.resources.logstores == {} and sls.resources.calls == []


def test_a_store_of_the_wrong_kind_is_refused(sls):
    assert init(sls, "--logstore", "ray-logs", "--metricstore", "ray-metrics").returncode == 0
    wrong = init(sls, "--logstore", "ray-metrics")
    assert wrong.returncode == 1 and "ray-metrics is a MetricStore" in wrong.stderr
    wrong = init(sls, "--logstore", "ray-events", "--metricstore", "ray-logs")
    assert wrong.returncode == 1 and "ray-logs is a logstore, not a MetricStore" in wrong.stderr
    bad = init(sls, "--logstore", "ray-logs", "--ttl", "0")
    assert bad.returncode == 2 and "--ttl" in bad.stderr
