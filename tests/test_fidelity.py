"""The fidelity harness (issue 12): a dead cluster answers exactly as it did alive.

A real two-node Ray 2.60 cluster runs everything at once (tests/fidelity_workload.py), once per event path (export
files, HTTP). While it lives, Ray's dashboard answers to every route its UI calls and a real Prometheus's answers to
every Default-dashboard panel are recorded (tests/fidelity_cluster.py); then Ray stops, the collectors finish, and
the archive is served in-process and asked the same. tests/fidelity_compare.py compares them field by field; what
may differ is listed there, once, with the reason (live-only statistics, the rule for states non-terminal at death,
and the known gaps still open).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pytest

from archive.storage import open_store
from tests import fidelity_compare as fc
from tests import needs
from tests.fidelity_cluster import Recorded, run
from tests.helpers import client_for


@dataclass
class Served:
    rec: Recorded
    answers: dict[str, object]  # route -> the archive's answer
    panels: dict[str, dict]  # case id -> our query_range data over the recording window
    whole: dict[str, dict]  # case id -> ours over the whole session
    series: list[dict]  # our /api/v1/series over the recording window
    catalog: dict  # the session's entry in /api/v1/sessions


def _query_range(client, base: str, expr: str, window: tuple[float, float, float]) -> dict:
    r = client.post(
        f"{base}/prometheus/api/v1/query_range",
        data={"query": expr, "start": window[0], "end": window[1], "step": window[2]},
    )
    assert r.status_code == 200, f"{expr}: {r.status_code} {r.text[:500]}"
    return r.json()["data"]


@pytest.fixture(scope="module", params=["files", "http"])
def served(request, tmp_path_factory):
    needs.prometheus()
    work = tmp_path_factory.mktemp(f"fidelity-{request.param}")
    rec = run(request.param, work)
    print(f"\nfidelity [{request.param}] timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in rec.timings.items()))
    with client_for(rec.archive, work / "cache") as client:
        base = f"/sessions/{rec.ref.id}"
        answers = {}
        for route in rec.live:
            r = client.get(f"{base}/{route}")
            answers[route] = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        panels = {c.id: _query_range(client, base, c.expr, rec.window) for c in rec.panels}
        whole = {c.id: _query_range(client, base, c.expr, rec.whole) for c in rec.whole_panels}
        series = client.post(
            f"{base}/prometheus/api/v1/series",
            data={"match[]": '{__name__=~".+", job="ray"}', "start": rec.window[0], "end": rec.window[1]},
        ).json()["data"]
        [catalog] = [s for s in client.get("/api/v1/sessions").json()["sessions"] if s["id"] == rec.ref.id]
    yield Served(rec, answers, panels, whole, series, catalog)
    shutil.rmtree(work, ignore_errors=True)


def test_the_workload_exercises_every_item(served):
    """The comparison proves something only if the live cluster showed what the seven items are about."""
    live = served.rec.live
    tasks = live["api/v0/tasks?detail=1&limit=10000"]["data"]["result"]["result"]
    failed_at_job_end = [t for t in tasks if (t.get("error_message") or "").startswith("Job finishes (")]
    assert {t["name"] for t in failed_at_job_end} >= {"waits_for_blocker", "infeasible"}  # item 1
    assert {t["state"] for t in tasks if t["name"] == "blocker"} == {"FAILED"}  # its worker killed at the job's end
    assert any(t["name"] == "my_acc:Accumulator.__init__" for t in tasks)  # item 2
    assert any(t["name"] == "fail_once" and t["attempt_number"] == 1 for t in tasks)  # a retry (item 7)
    assert {t["state"] for t in tasks} >= {"RUNNING", "PENDING_ARGS_AVAIL", "FINISHED", "FAILED"}
    assert len(live["api/v0/nodes"]["data"]["result"]["result"]) == 2  # item 6
    assert sorted(served.rec.jobs.values()) == ["finished", "running"]
    pgs = live["api/v0/placement_groups?detail=1&limit=10000"]["data"]["result"]["result"]
    assert sorted(g["state"] for g in pgs) == ["PENDING", "REMOVED", "REMOVED"]  # the finished job's are removed
    retry_panels = [c for c in served.rec.panels if 'IsRetry!="0"' in c.expr]
    assert any(served.rec.prometheus[c.id]["result"] for c in retry_panels), "no retry series reached Prometheus"


def test_every_route_answers_as_ray_did(served):
    route = "api/v0/tasks?detail=1&limit=10000"
    tasks = [body["data"]["result"]["result"] for body in (served.rec.live[route], served.answers[route])]
    ctx = fc.Context(
        served.rec.recorded_s * 1000, served.rec.events, **fc.task_context(*tasks, served.rec.recorded_s * 1000)
    )
    found = [d for route, live in served.rec.live.items() for d in fc.compare(route, live, served.answers[route], ctx)]
    assert not found, f"{len(found)} differences [{served.rec.events}], by kind:\n" + "\n".join(fc.by_kind(found))


def test_default_dashboard_panels_answer_as_prometheus_did(served):
    rec = served.rec
    problems = []
    for c in rec.panels:
        for d in fc.panel_differences(c.expr, rec.prometheus[c.id], served.panels[c.id], rec.settled_s + 2 * 2):
            problems.append(f"panel {c.target.panel_id} {c.target.title!r} {c.expr}\n    {d}")
    assert not problems, f"[{rec.events}]\n" + "\n".join(problems)


def test_the_whole_session_has_the_series_prometheus_had(served):
    """Over the whole session, its end included (Prometheus marks every series stale at its first failed scrape of
    the dead cluster; the compaction derives the same markers from the collectors' last blocks)."""
    rec = served.rec
    problems = [
        f"panel {c.target.panel_id} {c.expr}\n    {d}"
        for c in rec.whole_panels
        for d in fc.panel_differences(c.expr, rec.after[c.id], served.whole[c.id], settled_from_s=float("inf"))
    ]
    problems += fc.series_differences(rec.series, served.series, ignore_names=fc.PROMETHEUS_ONLY_SERIES)
    assert not problems, f"[{rec.events}]\n" + "\n".join(problems[:40])


def test_the_catalog_counts_every_node(served):
    nodes = served.rec.live["api/v0/nodes"]["data"]["result"]["result"]
    assert fc.catalog_problems(served.catalog, nodes) == []


def test_the_session_ends_when_ray_did_however_late_it_is_archived(served):
    """The live collector's archive, and on the files path a `collect --once` of the stopped session: both end
    when Ray did (item 4), not when they were collected."""
    rec = served.rec
    # The live collectors end the session when they finish (after Ray, here); `collect --once` when Ray did.
    archives = [(rec.archive, rec.collected_s)] + ([(rec.once, rec.stopped_s)] if rec.once else [])
    for archive, latest_s in archives:
        manifest = json.loads(open_store(archive).get(rec.ref.manifest_key))
        problems = fc.session_end_problems(manifest.get("end_ms"), rec.recorded_s * 1000, latest_s * 1000)
        assert not problems, f"{archive}: {problems}"
