"""Ray's own charts without Grafana, in real Chromium: the Overview's cards and the Metrics tab of a real dead
session draw the panels of the session's archived dashboards from our Prometheus API (routes/grafana.py,
historyserver/panels.py, pages/static/panels.js)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from archive.storage import open_store
from historyserver import panels as panels_mod
from historyserver.app import create_app
from historyserver.settings import ServerSettings
from tests.browser import browser, page_watch, served, wait_for_text

# Panels of Ray's Default dashboard that have no data in the demo session, and why. Every other panel must draw
# (the TPU panels 52 and 53 too: their queries end in `or vector(0)`, so Grafana draws a zero line, and so do we).
NO_DATA_DEFAULT = {
    40: "the demo workload creates no placement group (Ray exports ray_placement_groups only once one exists)",
    44: "no task or actor was killed for lack of memory",
    65: "no worker process died unexpectedly",
    8: "the machine has no GPU",
    55: "the machine has no GPU",
    18: "the machine has no GPU",
    56: "the machine has no GPU",
    62: "the machine has no GPU",
    63: "the machine has no GPU",
    45: "the machine has no GPU",
    46: "the machine has no GPU",
    28: "the machine has no GPU (no GPU resource)",
    50: "the machine has no TPU",
    51: "the machine has no TPU",
}
# Panels whose data depends on timing in a 20-second session: the GCS reports `ray_actors{Source="gcs"}` on its own
# period, which the short demo session may end before. Each must draw exactly when the archive holds its series.
TIMING = {33: 'ray_actors{Source="gcs"}'}
SHOTS = os.environ.get("CHARTS_SCREENSHOTS")  # a folder to keep the screenshots in, for a human to look at
# Every panel in view has drawn or said why not (a collapsed row's panels wait, as in Grafana, until it is opened).
SETTLED = """() => { const ps = [...document.querySelectorAll('.panel')].filter(p => !p.closest('.grid[hidden]'));
    return ps.length > 0 && ps.every(p => !['waiting', 'loading'].includes(p.dataset.state)); }"""
PANELS = """() => Object.fromEntries([...document.querySelectorAll('.panel')].map(p => [p.dataset.id, {
    state: p.dataset.state, series: Number(p.dataset.series || 0), title: p.querySelector('h2').textContent,
    text: p.innerText, canvas: (c => c ? [c.width, c.height] : null)(p.querySelector('canvas'))}]))"""


@pytest.fixture(scope="module")
def site(finished_cluster, tmp_path_factory):
    archive = finished_cluster.local_archive
    cache = tmp_path_factory.mktemp("charts-cache")
    app = create_app(ServerSettings(archive=archive, cache_dir=str(cache), catalog_ttl=0), open_store(archive))
    with served(app) as url, browser() as b:
        yield b, url, f"{url}/sessions/{finished_cluster.ref.id}/"


def shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(Path(SHOTS or tmp_path) / f"{name}.png"), full_page=True)


COLLAPSED = '.row-title[aria-expanded="false"]'
# One evaluation, so one document: whether it has settled with every row open, and its panels.
OPEN_AND_SETTLED = f"""() => ({{settled: ({SETTLED})(), closed: document.querySelectorAll('{COLLAPSED}').length,
    panels: ({PANELS})()}})"""


def frame_panels(frame, expand: bool = False) -> dict[str, dict]:
    """PANELS of the frame once settled; with `expand`, the rows the dashboard keeps collapsed opened first, as a
    user would. Ray's UI may replace the frame's document once it has drawn (see settled_panels): then the rows are
    opened again in the new one, until one document is read settled with every row open."""
    from playwright.sync_api import Error

    frame.wait_for_function(SETTLED, timeout=120_000)
    if not expand:
        return frame.evaluate(PANELS)
    for _ in range(5):
        seen = frame.evaluate(OPEN_AND_SETTLED)
        if seen["settled"] and not seen["closed"]:
            return seen["panels"]
        try:
            for row in frame.query_selector_all(COLLAPSED):
                row.click()
        except Error as e:
            if "not attached" not in str(e):  # else the document was replaced: open the new one's rows
                raise
        frame.wait_for_function(SETTLED, timeout=120_000)
    raise AssertionError(f"the dashboard's rows would not stay open: {seen['closed']} closed")


def settled_panels(page, uid: str, expand: bool = False) -> dict[str, dict]:
    """frame_panels of the dashboard `uid`'s frame. Ray's UI may set the iframe's src again once it has drawn (a
    re-render), which replaces the frame's document under the test: then the new document is read instead."""
    from playwright.sync_api import Error

    for attempt in range(3):
        [frame] = grafana_frames(page, 1, uid)
        try:
            return frame_panels(frame, expand)
        except Error as e:
            if "context" not in str(e) or attempt == 2:  # only a replaced document is read again
                raise
    raise AssertionError("unreachable")


def grafana_frames(page, count: int, uid: str = "") -> list:
    page.wait_for_function(
        "([n, uid]) => [...document.querySelectorAll('iframe')].filter(f => f.src.includes('/grafana/d')"
        " && f.src.includes(uid)).length >= n",
        arg=[count, uid],
        timeout=60_000,
    )
    handles = [h for h in page.query_selector_all("iframe") if "/grafana/d" in (h.get_attribute("src") or "")]
    return [h.content_frame() for h in handles]


def dashboard_panels(finished_cluster, name: str) -> set[int]:
    """The panel ids (rows aside) of the dashboard Ray generated for the session, as it wrote it."""
    path = finished_cluster.session_dir / "metrics" / "grafana" / "dashboards" / name
    return {p["id"] for p in panels_mod.iter_panels(json.loads(path.read_text())["panels"]) if p["type"] != "row"}


def archived(base: str, selector: str) -> bool:
    """Whether the session's archive holds a series for `selector` (asked of our Prometheus API)."""
    found = httpx.post(base + "prometheus/api/v1/series", data={"match[]": selector}).json()
    assert found["status"] == "success", found
    return bool(found["data"])


def test_health_points_rays_ui_at_this_server(site, finished_cluster):
    _, url, base = site
    health = httpx.get(base + "api/grafana_health").json()
    assert health["result"] is True
    assert health["data"]["grafanaHost"] == f"/sessions/{finished_cluster.ref.id}/grafana"
    assert health["data"]["dashboardUids"]["default"] == "rayDefaultDashboard"
    assert httpx.get(base + "api/prometheus_health").json()["result"] is True
    missing = httpx.get(base + "grafana/d-solo/rayDefaultDashboard/x?panelId=999")
    assert missing.status_code == 404 and "no panel 999" in missing.json()["msg"]
    assert httpx.get(base + "grafana/d-solo/rayDefaultDashboard/x?panelId=abc").status_code == 400


def test_overview_cards_draw_node_count_and_cluster_utilization(site, tmp_path):
    b, _, base = site
    with page_watch(b) as (page, problems):
        page.goto(base + "#/overview")
        wait_for_text(page, ["Node Status", "Recent jobs"])
        frames = grafana_frames(page, 2)
        drawn = {}
        for frame in frames:
            drawn.update(frame_panels(frame))
        shot(page, tmp_path, "overview")
        assert set(drawn) == {"24", "41"}, drawn
        for panel in drawn.values():
            assert panel["state"] == "drawn" and panel["series"] >= 1, panel
            assert panel["canvas"] and min(panel["canvas"]) > 50, panel
        assert "Memory (RAM)" in drawn["41"]["text"] and " %" in drawn["41"]["text"]  # Ray's unit "%": a suffix
        assert "Active Nodes" in drawn["24"]["text"] and "nodes" in drawn["24"]["text"]
        page.wait_for_load_state("networkidle")
        assert not problems.all(), problems.all()


def test_metrics_tab_draws_every_panel_with_data(site, finished_cluster, tmp_path):
    b, _, base = site
    expected_empty = set(NO_DATA_DEFAULT)
    with page_watch(b) as (page, problems):
        page.goto(base + "#/metrics")
        grafana_frames(page, 1)
        src = page.get_attribute("iframe", "src")
        assert "/grafana/d/rayDefaultDashboard/" in src and "kiosk=1" in src and "from=now-5m" in src, src
        panels = settled_panels(page, "rayDefaultDashboard", expand=True)
        shot(page, tmp_path, "metrics-default")
        [frame] = grafana_frames(page, 1, "rayDefaultDashboard")
        frame.locator("main").screenshot(path=str(Path(SHOTS or tmp_path) / "metrics-default-full.png"))
        drawn = {int(k) for k, p in panels.items() if p["state"] == "drawn" and p["series"] >= 1}
        print(f"rayDefaultDashboard: {len(drawn)} panels drawn of {len(panels)}")
        for pid, p in sorted(panels.items(), key=lambda kv: int(kv[0])):
            print(pid, p["state"], p["series"], p["title"], NO_DATA_DEFAULT.get(int(pid), ""))
        expected = dashboard_panels(finished_cluster, "default_grafana_dashboard.json")
        for pid, selector in TIMING.items():
            if not archived(base, selector):
                expected_empty.add(pid)
        assert {int(k) for k in panels} == expected
        assert not [p for p in panels.values() if p["state"] == "error"], panels
        assert drawn == expected - expected_empty, (expected - expected_empty - drawn, drawn & expected_empty)
        empty = {int(k) for k, p in panels.items() if p["state"] == "empty"}
        assert empty == expected_empty, (empty - expected_empty, expected_empty - empty)
        assert all("No data" in panels[str(k)]["text"] for k in empty)
        page.wait_for_load_state("networkidle")
        assert not problems.all(), problems.all()


def test_metrics_tabs_ray_data_dashboard_shows_all_its_panels(site, finished_cluster, tmp_path):
    # Ray's Metrics tab offers a "Ray Data" tab when grafana_health names a `data` dashboard (Metrics.tsx).
    b, _, base = site
    with page_watch(b) as (page, problems):
        page.goto(base + "#/metrics")
        # The Default dashboard first draws in view: switching tabs while its frame still loads would abort that
        # load (net::ERR_ABORTED), a failure the test itself caused, not one of the page.
        [default] = grafana_frames(page, 1, "rayDefaultDashboard")
        default.wait_for_function(SETTLED, timeout=120_000)
        page.get_by_role("tab", name="Ray Data").click()
        panels = settled_panels(page, "rayDataDashboard", expand=True)
        shot(page, tmp_path, "metrics-data")
        assert {int(k) for k in panels} == dashboard_panels(finished_cluster, "data_grafana_dashboard.json")
        drawn = sorted((int(k), p["title"]) for k, p in panels.items() if p["state"] == "drawn")
        print(f"rayDataDashboard: {len(drawn)} panels drawn of {len(panels)}: {drawn}")
        # Every panel queried and answered, none failed; the demo workload uses no Ray Data, so most say "No data".
        assert {p["state"] for p in panels.values()} <= {"empty", "drawn"}, panels
        assert all(p["series"] >= 1 for p in panels.values() if p["state"] == "drawn"), panels
        page.wait_for_load_state("networkidle")
        assert not problems.all(), problems.all()
