"""Live charts against a REAL Prometheus scraping a REAL Ray 2.60 (through the service-discovery file Ray writes in
its session directory): with --prometheus-url, a running session's panels read that Prometheus, marked live; once
the session ends, the same panels read the archive.

The collector runs with `--metrics-interval 0`, so the archive holds the running session but none of its metrics:
every series a live panel shows can only have come from the live Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from archive.layout import SessionRef
from archive.storage import open_store
from historyserver.app import create_app
from historyserver.settings import ServerSettings
from rayhistory.local_ray import LocalRayCluster, wait_for
from tests import needs
from tests.browser import browser, page_watch, served
from tests.servers.prometheus import Prometheus

CLUSTER = "live"
PANEL = "grafana/d-solo/rayDefaultDashboard/default-dashboard"


def prometheus_config(session_dir) -> str:
    sd = session_dir / "prom_metrics_service_discovery.json"
    return (
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: ray\n"
        f"    file_sd_configs:\n      - files: [{json.dumps(str(sd))}]\n        refresh_interval: 1s\n"
        # KubeRay's monitors add the cluster's name as ray_io_cluster; Ray's dashboards filter on it.
        f"    relabel_configs:\n      - target_label: ray_io_cluster\n        replacement: {CLUSTER}\n"
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    needs.prometheus()
    work = tmp_path_factory.mktemp("live-charts")
    archive = str(work / "archive")
    ray = LocalRayCluster()
    prometheus = Prometheus(work / "prometheus")
    collector = None
    try:
        session_dir = ray.start()
        ref = SessionRef("default", CLUSTER, session_dir.name)
        collector = subprocess.Popen(
            [sys.executable, "-m", "rayhistory.cli", "collect", "--session-dir", str(session_dir)]
            + ["--archive", archive, "--cluster", CLUSTER, "--namespace", "default", "--interval", "2"]
            + ["--metrics-interval", "0"],  # no metrics in the archive: the live ones can only be Prometheus's
            env=ray.env,
        )
        wait_for("the collector to register", lambda: open_store(archive).exists(ref.index_key), 120, collector)
        prometheus.data.mkdir(parents=True, exist_ok=True)
        prometheus.start(config_text=prometheus_config(session_dir))
        ray.wait_ready()
        # A few scrapes, so that a range query's steps (not only an instant one) see samples.
        cpu = f'count_over_time(ray_node_cpu_utilization{{SessionName="{session_dir.name}"}}[1m]) >= 3'
        wait_for("Prometheus's first scrapes of Ray", lambda: prometheus.query(cpu, time.time())["result"], 90)
        settings = ServerSettings(
            archive=archive, cache_dir=str(work / "cache"), catalog_ttl=0, prometheus_url=prometheus.url
        )
        app = create_app(settings, open_store(archive))
        yield app, ref, ray, collector, prometheus
    finally:
        ray.stop()
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(timeout=60)
            except subprocess.TimeoutExpired:
                collector.kill()
        ray.kill()
        prometheus.stop()
        shutil.rmtree(ray.temp_dir, ignore_errors=True)


def page_spec(client: TestClient, ref: SessionRef, panel_id: int) -> tuple[str, dict]:
    r = client.get(f"/sessions/{ref.id}/{PANEL}?panelId={panel_id}&var-Cluster={CLUSTER}&refresh&from=now-1h&to=now")
    assert r.status_code == 200, r.text
    spec = json.loads(re.search(r'<script id="spec" type="application/json">(.*?)</script>', r.text, re.S)[1])
    return r.text, spec


def test_a_running_sessions_panels_read_the_live_prometheus(live):
    app, ref, _, _, prometheus = live
    client = TestClient(app)
    html, spec = page_spec(client, ref, 41)  # the Overview's Cluster Utilization
    live_api = f"/sessions/{ref.id}/live/prometheus/api/v1"
    assert f'data-api="{live_api}"' in html and 'data-live="true"' in html
    now = time.time()
    for target in spec["panel"]["targets"]:
        form = {"query": target["query"], "start": spec["startMs"] / 1000, "end": now, "step": spec["stepMs"] / 1000}
        got = client.post(f"{live_api}/query_range", data=form).json()
        assert got["status"] == "success", got
        # What Prometheus itself answers (the proxy passes its answer through), and nothing the archive has.
        own = prometheus.query_range(target["query"], form["start"], now, form["step"])["result"]
        assert [s["metric"] for s in got["data"]["result"]] == [s["metric"] for s in own]
        archived = client.post(f"/sessions/{ref.id}/prometheus/api/v1/query_range", data=form).json()
        assert archived["status"] == "success" and archived["data"]["result"] == [], archived
    cpu = spec["panel"]["targets"][0]["query"]
    assert (
        "CPU" in spec["panel"]["targets"][0]["legend"]
        and client.post(
            f"{live_api}/query_range", data={"query": cpu, "start": spec["startMs"] / 1000, "end": now, "step": 1}
        ).json()["data"]["result"]
    ), "no live CPU series"
    # Bounded like our own API, and only about this session.
    r = client.post(f"{live_api}/query_range", data={"query": cpu, "start": 0, "end": now, "step": 1})
    assert r.status_code == 400 and "11,000 points" in r.json()["error"]
    r = client.post(f"{live_api}/query", data={"query": "up"})
    assert r.status_code == 400 and "pins neither SessionName" in r.json()["error"]


def test_the_live_panel_draws_in_chromium_with_a_live_marker(live, tmp_path):
    app, ref, _, _, _ = live
    with served(app) as url, browser() as b, page_watch(b) as (page, problems):
        asked = []
        page.on("request", lambda req: asked.append(req.url))
        page.goto(f"{url}/sessions/{ref.id}/{PANEL}?panelId=24&var-Cluster={CLUSTER}&refresh=2s")
        page.wait_for_function("() => document.querySelector('.panel').dataset.state === 'drawn'", timeout=60_000)
        assert page.locator(".panel h2 .live-badge").is_visible()
        assert int(page.get_attribute(".panel", "data-series") or 0) >= 1
        count = (
            "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/live/prometheus/')).length"
        )
        first = page.evaluate(count)
        assert first >= 1
        # Ray's refresh (2s here): the panel asks the live Prometheus again, up to the new now.
        page.wait_for_function(f"() => ({count})() > {first}", timeout=30_000)
        page.wait_for_function("() => document.querySelector('.panel').dataset.state === 'drawn'", timeout=30_000)
        page.screenshot(path=str(tmp_path / "live-panel.png"))
        # Ray's own Overview of the running session, served from the archive: its two embedded panels are live.
        page.goto(f"{url}/sessions/{ref.id}/#/overview")
        page.wait_for_function(
            "() => [...document.querySelectorAll('iframe')].filter(f => f.src.includes('/grafana/d-solo/')).length == 2",
            timeout=60_000,
        )
        for handle in page.query_selector_all("iframe"):
            frame = handle.content_frame()
            frame.wait_for_function(
                "() => { const p = document.querySelector('.panel'); return p && p.dataset.state === 'drawn'; }",
                timeout=60_000,
            )
            assert frame.locator(".panel h2 .live-badge").is_visible()
        page.screenshot(path=str(tmp_path / "live-ray-overview.png"))
        # Our own session page's charts: the same live source and marker (the CPU chart has only live data).
        page.goto(f"{url}/sessions/{ref.id}/overview")
        page.wait_for_function(
            "() => { const c = document.querySelector('#chart-cpu'); return c && c.dataset.state === 'drawn'; }",
            timeout=60_000,
        )
        assert page.locator(".chart-note .live-badge").is_visible()
        assert int(page.get_attribute("#chart-cpu", "data-series") or 0) >= 1
        # They follow the running session: every 15 s each is asked again up to the new now, and still draws.
        assert "refreshed every 15 s" in page.inner_text(".chart-note")
        end = float(page.get_attribute("#chart-cpu", "data-end") or 0)
        page.wait_for_function(
            f"() => {{ const c = document.querySelector('#chart-cpu'); return Number(c.dataset.end) > {end} "
            "&& c.dataset.state === 'drawn'; }",
            timeout=60_000,
        )
        page.screenshot(path=str(tmp_path / "live-overview.png"), full_page=True)
        assert not any("/sessions/" in u and "/prometheus/api/v1" in u and "/live/" not in u for u in asked), asked
        assert not problems.all(), problems.all()


def test_once_the_session_ends_its_panels_read_the_archive(live):
    """Runs last: it stops the cluster and the collector, which marks the session ended."""
    app, ref, ray, collector, _ = live
    ray.stop()
    collector.send_signal(signal.SIGTERM)
    assert collector.wait(timeout=120) == 0
    client = TestClient(app)
    html, _ = page_spec(client, ref, 41)
    assert f'data-api="/sessions/{ref.id}/prometheus/api/v1"' in html and 'data-live="false"' in html
    overview = client.get(f"/sessions/{ref.id}/overview").text
    assert f'data-api="/sessions/{ref.id}/prometheus/api/v1" data-live="false"' in overview
    r = client.post(f"/sessions/{ref.id}/live/prometheus/api/v1/query", data={"query": "vector(1)"})
    assert r.status_code == 404 and "the session is ended" in r.json()["error"]
