"""The cluster page, its JSON, the merged session list and the gone-cluster redirect: the real kubernetes client
against tests/servers/kube_api.py (KubeRay's objects from test_live_kubernetes) and a local archive."""

from __future__ import annotations

import re

import pytest

from archive.manifest import ENDED, RUNNING
from archive.storage.local import LocalStore
from tests.servers.kube_api import KubeAPI
from tests.test_live_kubernetes import _client, _live, _objects, _publish, crds  # noqa: F401 - fixture

T0 = 1_790_000_000_000


@pytest.fixture
def kube(crds):  # noqa: F811 - the imported fixture
    with KubeAPI(crds, _objects()) as api:
        yield api


def _name(i: int) -> str:
    return f"session_2026-11-{1 + i % 28:02d}_10-00-00_{i:06d}_{1000 + i}"


def test_a_live_cluster_with_100_past_sessions(tmp_path, kube):
    store = LocalStore(tmp_path / "archive")
    past = [_publish(store, "team-a", "train-mnist-x7k2p", _name(i), ENDED, T0 + i * 60_000) for i in range(100)]
    running = _publish(store, "team-a", "train-mnist-x7k2p", _name(100), RUNNING, T0 + 100 * 60_000)
    _publish(store, "team-b", "train-mnist-x7k2p", _name(101), ENDED, T0)  # same name, another namespace
    with _client(tmp_path, _live(tmp_path, kube)) as client:
        body = client.get("/api/v1/clusters/team-a/train-mnist-x7k2p").json()
        page = client.get("/clusters/team-a/train-mnist-x7k2p")
    live = body["live"]
    assert (live["state"], live["owner"]) == ("ready", {"kind": "RayJob", "name": "train-mnist"})
    assert live["head"] == {
        "pod": "train-mnist-x7k2p-head-8kq2x",
        "pod_ip": "10.244.1.7",
        "service": "train-mnist-x7k2p-head-svc",
    }
    assert live["created"] == 1_795_637_405_000 and live["age_ms"] > 0  # 2026-11-25T20:10:05Z
    assert live["workers"] == {"desired": 1, "ready": 1, "available": 1}
    assert body["running_session"]["id"] == running
    assert [s["id"] for s in body["sessions"]] == [running, *reversed(past)]  # newest first, only this namespace
    oldest = body["sessions"][-1]
    assert (oldest["status"], oldest["duration_ms"], oldest["url"]) == ("ended", 1000, f"/sessions/{past[0]}/")
    assert body["live_dashboard"] == "/clusters/team-a/train-mnist-x7k2p/live/"
    assert page.status_code == 200
    rows = re.findall(r'<tr><td><a href="/sessions/([^/]+)/">', page.text.split('id="past"')[1])
    assert rows == [running, *reversed(past)]
    assert "RayJob train-mnist" in page.text and 'href="/clusters/team-a/train-mnist-x7k2p/live/"' in page.text


def test_worker_groups_and_a_cluster_known_only_to_the_archive(tmp_path, kube):
    store = LocalStore(tmp_path / "archive")
    gone = _publish(store, "team-a", "nightly-eval-r2d2x", _name(1), ENDED, T0)
    with _client(tmp_path, _live(tmp_path, kube)) as client:
        kuberay = client.get("/api/v1/clusters/team-a/raycluster-kuberay").json()
        archived = client.get("/api/v1/clusters/team-a/nightly-eval-r2d2x").json()
        unknown = client.get("/api/v1/clusters/team-a/never-was")
        page = client.get("/clusters/team-a/nightly-eval-r2d2x").text
    assert kuberay["live"]["worker_groups"] == [
        {"name": "workers", "replicas": 1, "min_replicas": 1, "max_replicas": 4, "suspended": False}
    ]
    assert kuberay["live"]["owner"] is None and kuberay["sessions"] == [] and kuberay["running_session"] is None
    assert archived["live"] is None and [s["id"] for s in archived["sessions"]] == [gone]
    assert unknown.status_code == 404 and "GET /api/v1/clusters" in unknown.json()["error"]["message"]
    assert "it is gone" in page


def test_a_gone_cluster_redirects_to_its_last_archived_session_at_the_same_path(tmp_path, kube):
    store = LocalStore(tmp_path / "archive")
    _publish(store, "team-a", "nightly-eval-r2d2x", _name(1), ENDED, T0)
    last = _publish(store, "team-a", "nightly-eval-r2d2x", _name(2), ENDED, T0 + 60_000)
    with _client(tmp_path, _live(tmp_path, kube)) as client:
        root = client.get("/clusters/team-a/nightly-eval-r2d2x/live", follow_redirects=False)
        r = client.get("/clusters/team-a/nightly-eval-r2d2x/live/api/jobs/?x=1", follow_redirects=False)
        followed = client.get("/clusters/team-a/nightly-eval-r2d2x/live/")
        unknown = client.get("/clusters/team-a/never-was/live/", follow_redirects=False)
    assert root.status_code == 308 and root.headers["location"] == "/clusters/team-a/nightly-eval-r2d2x/live/"
    assert r.status_code == 307 and r.headers["location"] == f"/sessions/{last}/api/jobs/?x=1"
    assert followed.status_code == 200 and "<html" in followed.text.lower()  # Ray's UI of the archived session
    assert unknown.status_code == 404


def test_the_session_list_merges_live_clusters_and_sessions_with_filters_and_pages(tmp_path, kube):
    store = LocalStore(tmp_path / "archive")
    running = _publish(store, "team-a", "raycluster-kuberay", _name(0), RUNNING, T0 + 5_000)
    ended = [_publish(store, "team-a", "raycluster-kuberay", _name(i), ENDED, T0 + i * 1000) for i in (1, 2, 3)]
    other = _publish(store, "team-b", "gone-cluster", _name(4), ENDED, T0 - 86_400_000)
    with _client(tmp_path, _live(tmp_path, kube, namespaces=("team-a", "team-b"))) as client:
        everything = client.get("/api/v1/clusters", params={"limit": 100}).json()
        live_only = client.get("/api/v1/clusters", params={"status": "live"}).json()
        one = client.get("/api/v1/clusters", params={"cluster": "raycluster-kuberay", "status": "ended"}).json()
        page2 = client.get("/api/v1/clusters", params={"namespace": "team-a", "limit": 2, "offset": 2}).json()
        recent = client.get("/api/v1/clusters", params={"since": T0, "status": "ended"}).json()
        bad = client.get("/api/v1/clusters", params={"since": 5, "until": 1})
        html = client.get("/", params={"namespace": "team-a", "status": "ended", "limit": 2}).text
    kinds = [(r["kind"], r["namespace"], r["cluster"]) for r in everything["rows"]]
    live_rows = [k for k in kinds if k[0] == "live"]
    assert kinds[: len(live_rows)] == live_rows and len(live_rows) == 3  # live first: 2 in team-a, 1 in team-b
    kuberay = next(r for r in everything["rows"] if r["cluster"] == "raycluster-kuberay" and r["kind"] == "live")
    assert kuberay["session"]["id"] == running and kuberay["cluster_url"] == "/clusters/team-a/raycluster-kuberay"
    assert kuberay["dashboard_url"] == "/clusters/team-a/raycluster-kuberay/live/" and kuberay["sessions"] == 4
    session_ids = [r["session"]["id"] for r in everything["rows"] if r["kind"] == "session"]
    assert session_ids == [*reversed(ended), other]  # the running one is on its live row, not twice
    assert everything["total"] == 7 and {r["kind"] for r in live_only["rows"]} == {"live"}
    assert [r["session"]["id"] for r in one["rows"]] == list(reversed(ended))
    assert (page2["total"], len(page2["rows"]), page2["offset"]) == (5, 2, 2)
    assert [r["session"]["id"] for r in recent["rows"]] == list(reversed(ended))  # not the day-old session
    assert bad.status_code == 400 and "since" in bad.json()["error"]["message"]
    assert 'rel="next"' in html and "offset=2" in html and other not in html
    assert html.count('<tr class="session">') == 2
