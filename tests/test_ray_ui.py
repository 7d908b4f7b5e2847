"""Ray's own web UI served for a dead session: its files, the cluster routes it calls, and real Chromium rendering
its pages from the archive of a real Ray cluster that has stopped."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from archive.storage import open_store
from historyserver.app import create_app
from historyserver.settings import ServerSettings
from tests.browser import browser, page_watch, served, wait_for_text
from tests.helpers import client_for

UNKNOWN = "default~nope~session_2026-01-01_00-00-00_000000_1"


@pytest.fixture(scope="module")
def ui(finished_cluster, tmp_path_factory):
    client = client_for(finished_cluster.local_archive, tmp_path_factory.mktemp("ui-cache"))
    base = f"/sessions/{finished_cluster.ref.id}/"
    return client, base


def sample(reference: Path, name: str):
    return json.loads((reference / "dashboard_api" / f"{name}.json").read_text())["response"]


def rays_node_id(finished_cluster) -> str:
    """The node id as Ray's raylet logged it in the session directory: not as one of our routes reports it."""
    logged = re.search(
        r"Setting node ID node_id=([0-9a-f]{56})", (finished_cluster.session_dir / "logs" / "raylet.out").read_text()
    )
    assert logged, "raylet.out does not log the node id"
    return logged.group(1)


def keys_deep(value, depth: int = 2) -> object:
    """The key structure of a response (dicts only, to the given depth), to compare with Ray's samples."""
    if isinstance(value, dict) and depth:
        return {k: keys_deep(v, depth - 1) for k, v in value.items()}
    return None


# --- the UI's files -----------------------------------------------------------------------------------------


def test_index_and_hashed_static_files_with_their_types_and_caching(ui):
    client, base = ui
    index = client.get(base)
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert index.headers["cache-control"] == "no-cache"
    assert "./static/js/main." in index.text  # relative: it resolves under the session's prefix
    script = index.text.split('src="./')[1].split('"')[0]
    js = client.get(base + script)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "immutable" in js.headers["cache-control"]
    css = index.text.split('href="./static/css/')[1].split('"')[0]
    assert client.get(base + "static/css/" + css).headers["content-type"].startswith("text/css")
    favicon = client.get(base + "favicon.ico")
    assert favicon.status_code == 200 and favicon.headers["content-type"] == "image/x-icon"
    assert favicon.headers["cache-control"] == "no-cache"


def test_no_slash_redirects_and_unknown_files_and_sessions_are_404_in_rays_envelope(ui):
    client, base = ui
    r = client.get(base.rstrip("/"), follow_redirects=False)
    assert r.status_code in (307, 308) and r.headers["location"].endswith(base)
    missing = client.get(base + "static/js/nope.js")
    assert missing.status_code == 404 and missing.json()["result"] is False
    for path in ("", "favicon.ico", "api/version", "nodes?view=summary", "timezone"):
        r = client.get(f"/sessions/{UNKNOWN}/{path}")
        assert r.status_code == 404, path
        body = r.json()
        assert (set(body), body["result"], body["data"]) == ({"result", "msg", "data"}, False, None), path
        assert UNKNOWN in body["msg"], body["msg"]  # the message names what was not found


def test_paths_outside_the_build_are_refused(ui, finished_cluster, tmp_path):
    client, base = ui
    for rel in (
        "static/..%2F..%2F..%2F..%2Fray%2F__init__.py",
        "..%2F..%2Fsettings.py",
        "static%2F..%2F..%2Fbuild",
        "%2Fetc%2Fpasswd",
        "static/js/..%5C..%5Cindex.html",
    ):
        r = client.get(base + rel)
        assert r.status_code in (400, 404), rel
        assert b"import" not in r.content and b"root:" not in r.content
    # Unnormalised dot segments on the wire, as a hostile client sends them (httpx would normalise them away).
    with served(
        create_app(
            ServerSettings(archive=finished_cluster.local_archive, cache_dir=str(tmp_path), catalog_ttl=0),
            open_store(finished_cluster.local_archive),
        )
    ) as url:
        conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=10)
        for raw in ("static/../../../../../../etc/passwd", "static/js/../../../__init__.py"):
            conn.request("GET", base + raw)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status in (400, 404), raw
            assert b"root:" not in body and b"import" not in body
        conn.close()


# --- the cluster routes, in Ray's shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, name",
    [
        ("api/authentication_mode", "authentication_mode"),
        ("timezone", "timezone"),
        ("usage_stats_enabled", "usage_stats_enabled"),
        ("api/version", "version"),
        ("api/v0/cluster_metadata", "cluster_metadata"),
        ("api/profiling_enabled", "profiling_enabled"),
        ("api/cluster_status?format=1", "cluster_status_fmt"),
    ],
)
def test_routes_answer_in_the_shape_of_rays_samples(ui, reference, path, name):
    client, base = ui
    r = client.get(base + path)
    assert r.status_code == 200, r.text
    assert keys_deep(r.json(), 3) == keys_deep(sample(reference, name), 3)


def test_health_and_profiling_report_what_a_dead_cluster_lacks(ui, finished_cluster):
    client, base = ui
    # Charts are drawn by this server from the archive (tests/test_ray_charts.py): both report healthy.
    assert client.get(base + "api/grafana_health").json()["result"] is True
    assert client.get(base + "api/prometheus_health").json()["result"] is True
    assert client.get(base + "api/profiling_enabled").json()["data"]["profilingEnabled"] is False
    version = client.get(base + "api/version").json()
    assert version["ray_version"] == "2.60.0"
    assert version["session_name"] == finished_cluster.ref.session
    for path in ("api/serve/applications/", "api/data/datasets/01000000", "api/v0/platform_events"):
        assert client.get(base + path).status_code == 404
    assert client.head(base + "api/v0/platform_events").status_code == 404


def test_nodes_summary_and_detail_from_the_archive(ui, reference, finished_cluster):
    client, base = ui
    summary = client.get(base + "nodes?view=summary").json()
    ray_summary = sample(reference, "nodes_summary")
    assert summary["msg"] == ray_summary["msg"]
    [node] = summary["data"]["summary"]
    ray_node = ray_summary["data"]["summary"][0]
    assert set(node) == set(ray_node)
    assert set(node["raylet"]) == set(ray_node["raylet"])
    raylet = node["raylet"]
    v0 = client.get(base + "api/v0/nodes").json()["data"]["result"]["result"][0]
    # Ray's NodeState lists its time columns only with ?detail=1.
    assert "start_time_ms" not in v0 and "end_time_ms" not in v0
    v0_detail = client.get(base + "api/v0/nodes", params={"detail": 1}).json()["data"]["result"]["result"][0]
    assert v0_detail["start_time_ms"] and v0_detail["end_time_ms"] >= v0_detail["start_time_ms"]
    assert raylet["nodeId"] == v0["node_id"] == rays_node_id(finished_cluster) and raylet["isHeadNode"] is True
    assert node["ip"] == v0["node_ip"] and node["hostname"]
    # It went down with the cluster: shown as it was during the session, with Ray's reason kept.
    assert v0["state"] == "DEAD" and raylet["state"] == "ALIVE" and raylet["stateMessage"]
    assert raylet["resourcesTotal"]["CPU"] == 2.0 and "objectStoreMemory" in raylet["resourcesTotal"]
    assert raylet["sessionDir"].endswith(finished_cluster.ref.session)
    assert node["cpu"] is None and node["networkSpeed"] == [] and node["loadAvg"] == []

    detail = client.get(base + f"nodes/{raylet['nodeId']}").json()
    assert detail["msg"] == "Node details fetched."
    d = detail["data"]["detail"]
    assert set(d) == set(sample(reference, "node_detail")["data"]["detail"])
    assert d["workers"] == []
    classes = {a["className"] for a in d["actors"].values()}
    assert {"Counter", "BrokenInit"} <= classes
    assert client.get(base + "nodes/" + "0" * 56).status_code == 404


def test_cluster_status_names_the_node(ui, finished_cluster):
    client, base = ui
    node_id = rays_node_id(finished_cluster)
    text = client.get(base + "api/cluster_status?format=1").json()["data"]["clusterStatus"]
    # Ray's own last status when the head collector's snapshot holds one, else the one rebuilt from the archive:
    # either names the node and its CPUs in the layout the UI splits.
    node_part, resources = text.split("Resources", 1)
    assert f"node_{node_id}" in node_part.split("Node status")[1]
    assert "2.0 CPU" in resources
    plain = client.get(base + "api/cluster_status").json()
    from_ray = "autoscaler" in text.lower() and "usage is not archived" not in text
    assert plain["result"] is True
    assert (plain["data"]["clusterStatus"] is not None) == from_ray


def test_cluster_events_are_read_from_the_archive(ui, reference, finished_cluster):
    client, base = ui
    r = client.get(base + "events").json()
    assert r["msg"] == "All events fetched."
    events = r["data"]["events"]["global"]
    assert set(events[0]) == set(sample(reference, "events")["data"]["events"]["global"][0])
    messages = [e["message"] for e in events]
    for submission_id in finished_cluster.jobs:
        assert f"Started a ray job {submission_id}." in messages
    assert all(e["sourceType"] == "JOBS" for e in events if "ray job" in e["message"])
    assert [int(e["timestamp"]) for e in events] == sorted(int(e["timestamp"]) for e in events)
    one_job = client.get(base + "events?job_id=01000000").json()
    assert one_job["msg"] == "Job events fetched." and one_job["data"]["jobId"] == "01000000"


# --- Ray's UI in Chromium -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(finished_cluster, tmp_path_factory):
    """The history server over the dead cluster's local archive, served by uvicorn, and one Chromium."""
    app = create_app(
        ServerSettings(
            archive=finished_cluster.local_archive,
            cache_dir=str(tmp_path_factory.mktemp("ui-browser-cache")),
            catalog_ttl=0,
        ),
        open_store(finished_cluster.local_archive),
    )
    with served(app) as url, browser() as b:
        yield b, f"{url}/sessions/{finished_cluster.ref.id}/"


@pytest.fixture(scope="module")
def session_facts(ui, finished_cluster):
    client, base = ui
    jobs = client.get(base + "api/jobs/").json()
    driver_job = next(j["job_id"] for j in jobs if j["type"] == "DRIVER")
    return {"driver_job": driver_job, "node_id": rays_node_id(finished_cluster)}


def assert_clean(page, problems) -> None:
    page.wait_for_load_state("networkidle")  # let the page's requests settle before judging them
    assert not problems.all(), "Ray's UI hit problems:\n" + "\n".join(problems.all())


def test_jobs_page_lists_the_jobs(site, finished_cluster, session_facts):
    b, url = site
    with page_watch(b) as (page, problems):
        page.goto(url + "#/jobs")
        wait_for_text(page, [*finished_cluster.jobs, session_facts["driver_job"], "SUCCEEDED", "FAILED"])
        page.screenshot(path="/tmp/ray_ui_jobs.png", full_page=True)
        assert_clean(page, problems)


def test_job_detail_page_shows_its_task_table(site, session_facts):
    b, url = site
    with page_watch(b) as (page, problems):
        page.goto(url + f"#/jobs/{session_facts['driver_job']}")
        wait_for_text(page, ["Task Table"])
        page.get_by_text("Task Table", exact=True).click()  # collapsed by default
        wait_for_text(page, ["square", "flaky", "FINISHED", "FAILED"])
        assert_clean(page, problems)


def test_actors_page_lists_the_actors(site):
    b, url = site
    with page_watch(b) as (page, problems):
        page.goto(url + "#/actors")
        wait_for_text(page, ["Counter", "BrokenInit", "demo_counter", "DEAD"])
        assert_clean(page, problems)


def test_logs_page_lists_the_node_and_its_files(site, session_facts):
    b, url = site
    node_id = session_facts["node_id"]
    with page_watch(b) as (page, problems):
        page.goto(url + "#/logs")
        wait_for_text(page, [f"Node ID: {node_id}"])
        page.get_by_text(f"Node ID: {node_id}").click()
        wait_for_text(page, [f"Node: {node_id}", "raylet.out", "gcs_server.out"])
        assert_clean(page, problems)


def test_cluster_and_overview_pages_render_without_live_stats(site, session_facts):
    b, url = site
    node_id = session_facts["node_id"]
    with page_watch(b) as (page, problems):
        page.goto(url + "#/cluster")
        wait_for_text(page, ["(Head)"])
        page.goto(url + f"#/cluster/nodes/{node_id}")
        wait_for_text(page, [f"NODE - {node_id}", "Hostname", "Node details fetched."])
        page.goto(url + "#/overview")
        wait_for_text(page, ["Node Status", f"node_{node_id}", "Recent jobs"])
        assert_clean(page, problems)


def test_metrics_tab_embeds_grafana_over_the_sessions_life(site, finished_cluster, tmp_path):
    """With --grafana-url, Ray's own Metrics tab embeds its panels through our redirect, which pins the range to
    the session's start and end and selects the archive datasource. No Grafana can run here: a loopback server
    stands at its address and records what the iframes asked it for."""
    from tests.servers.loopback import LoopbackHTTP

    asked: list[str] = []

    def grafana_stub(path, headers):
        asked.append(path)
        return 200, "text/html", b"<html><body>grafana</body></html>"

    grafana = LoopbackHTTP(grafana_stub)
    app = create_app(
        ServerSettings(
            archive=finished_cluster.local_archive,
            cache_dir=str(tmp_path / "cache"),
            catalog_ttl=0,
            grafana_url=grafana.url,
        ),
        open_store(finished_cluster.local_archive),
    )
    entry = app.state.services.catalog.get(finished_cluster.ref.id)
    try:
        b, _ = site  # the module's Chromium (one Playwright per thread), on a server configured with Grafana
        with served(app) as url, page_watch(b) as (page, problems):
            page.goto(f"{url}/sessions/{finished_cluster.ref.id}/#/metrics")
            page.wait_for_selector("iframe", timeout=30_000)
            sources = page.eval_on_selector_all("iframe", "frames => frames.map(f => f.getAttribute('src'))")
            assert sources and all(s.startswith(f"/sessions/{finished_cluster.ref.id}/grafana/d") for s in sources)
            assert_clean(page, problems)
    finally:
        grafana.close()
    assert asked, "no panel reached Grafana"
    for path in asked:
        target = urlsplit(path)
        query = dict(pair.split("=", 1) for pair in target.query.split("&"))
        assert target.path.startswith(("/d/", "/d-solo/")), path
        assert query["from"] == str(entry.manifest.start_ms) and query["to"] == str(entry.end_ms), path
        assert query["var-datasource"] in ("Rayhistory+archive", "Rayhistory%20archive"), path
        assert query["var-SessionName"] == finished_cluster.ref.session, path
