"""The overview page's metric charts, in real Chromium: drawn by the vendored uPlot from the session's Prometheus
API, with Ray's Default dashboard expressions, an empty state and an error state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.manifest import ENDED, NodeRecord, SessionManifest
from archive.storage.local import LocalStore
from tests.conftest import REFERENCE
from tests.helpers import client_for

STATIC = Path(__file__).resolve().parents[1] / "historyserver" / "pages" / "static"
CHARTS = ("cpu", "memory", "tasks", "object-store")
# Chart id -> the Default dashboard panel whose targets it draws.
PANELS = {
    "cpu": "Node CPU Usage %",
    "memory": "Node Memory Usage % (heap + object store)",
    "tasks": "All Tasks by State",
    "object-store": "Object Store Memory Usage",
}
SETTLED = "els => els.length === 4 && els.every(e => e.dataset.state !== 'loading')"


def charts_state(page) -> dict[str, dict]:
    """Each chart as the page shows it: its state, series count, legend labels, canvas size, text, queries."""
    page.wait_for_function(f"({SETTLED})([...document.querySelectorAll('#charts .chart')])", timeout=60_000)
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#charts .chart')].map(e => {
        const canvas = e.querySelector('.uplot canvas');
        return [e.id.replace('chart-', ''), {
            state: e.dataset.state, series: Number(e.dataset.series || 0),
            legend: [...e.querySelectorAll('.u-legend .u-series .u-label')].map(l => l.textContent).slice(1),
            canvas: canvas ? [canvas.width, canvas.height] : null,
            text: e.innerText, targets: JSON.parse(e.dataset.targets), queries: JSON.parse(e.dataset.queries)}];
    }))""")


def serve(archive: str, cache: Path):
    from archive.storage import open_store
    from historyserver.app import create_app
    from historyserver.settings import ServerSettings

    return create_app(ServerSettings(archive=archive, cache_dir=str(cache), catalog_ttl=0), open_store(archive))


def test_vendored_uplot_is_shipped_and_served(tmp_path):
    vendor = STATIC / "vendor"
    js = (vendor / "uPlot.iife.min.js").read_text()
    assert js.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()
    assert "npm pack uplot@1.6.32" in (vendor / "README.md").read_text()
    pyproject = (STATIC.parents[2] / "pyproject.toml").read_text()
    assert '"pages/static/vendor/*"' in pyproject  # else a wheel would ship the page without its library
    archive = tmp_path / "archive"
    archive.mkdir()
    with client_for(str(archive), tmp_path / "cache") as c:
        for path in ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "overview_charts.js", "overview_charts.css"):
            assert c.get(f"/assets/{path}").status_code == 200, path


def test_charts_use_the_default_dashboards_panels(finished_cluster, tmp_path):
    """On the real dead cluster: the CPU and memory charts draw the node's series, and every chart draws exactly
    the series the API returns for the Default dashboard panel's own expressions.

    The node metrics (ray_node_*) are always archived; ray_tasks only when a scrape (every 2 s in the demo) fell
    while the short-lived drivers that own the tasks were alive and had reported, so for the task and object-store
    charts the API's answer decides between a drawn chart and the empty state (tested drawn on a written session)."""
    from tests.browser import browser, page_watch, served

    app = serve(finished_cluster.local_archive, tmp_path)
    sid = finished_cluster.ref.id
    with served(app) as url, browser() as b, page_watch(b) as (page, problems):
        page.goto(f"{url}/sessions/{sid}/overview")
        charts = charts_state(page)
        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
        page.wait_for_load_state("networkidle")
        assert not problems.all(), problems.all()

    dashboard = json.loads((REFERENCE / "grafana" / "generated" / "default_grafana_dashboard.json").read_text())
    panels = {p["title"]: p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]}
    entry = app.state.services.catalog.get(sid)
    start, end = entry.manifest.start_ms / 1000, entry.end_ms / 1000
    with client_for(finished_cluster.local_archive, tmp_path / "cache2") as c:
        instances = c.get(
            f"/sessions/{sid}/prometheus/api/v1/label/instance/values", params={"match[]": "ray_node_cpu_utilization"}
        ).json()["data"]
        for chart_id, chart in charts.items():
            targets = panels[PANELS[chart_id]]["targets"]
            assert chart["targets"] == [[t["expr"], t["legendFormat"]] for t in targets], chart_id
            assert all(entry.manifest.session_name in q and "$" not in q for q in chart["queries"]), chart["queries"]
            expected = []
            for query, (_, legend) in zip(chart["queries"], chart["targets"]):
                r = c.post(
                    f"/sessions/{sid}/prometheus/api/v1/query_range",
                    data={"query": query, "start": start, "end": end, "step": "1s"},
                ).json()
                assert r["status"] == "success", r
                expected += [
                    legend.replace("{{instance}}", s["metric"].get("instance", ""))
                    .replace("{{RayNodeType}}", s["metric"].get("RayNodeType", ""))
                    .replace("{{State}}", s["metric"].get("State", ""))
                    for s in r["data"]["result"]
                ]
            if expected:
                assert chart["state"] == "drawn" and chart["series"] == len(expected), (chart_id, chart)
                assert sorted(chart["legend"]) == sorted(expected), chart_id
                assert chart["canvas"] and min(chart["canvas"]) > 100, chart
            else:
                assert chart["state"] == "empty" and "no metrics archived for this session" in chart["text"].lower()
    assert len(instances) == 1
    for chart_id in ("cpu", "memory"):
        assert charts[chart_id]["state"] == "drawn" and charts[chart_id]["series"] >= 1, charts[chart_id]
    assert f"CPU Usage: {instances[0]} (head)" in charts["cpu"]["legend"]
    assert f"Memory Used (Host): {instances[0]} (head)" in charts["memory"]["legend"]


# -- sessions written in the archive's format: one with Ray's task metrics, one with no metrics at all ---------

SESSION = "session_2026-11-25_20-59-21_325155_1996"
NODE = "d" * 56
INSTANCE = "10.0.0.1:8080"
START_MS = 1_795_000_000_000
SCRAPES = 40  # every 15 s: a 10-minute session


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _scrape(i: int) -> str:
    """One scrape block as the collector writes it, with Ray 2.60's labels for the node and task families."""
    t = f"{(START_MS + 5_000 + i * 15_000) / 1000:.3f} "
    target = {"instance": INSTANCE, "job": "ray", "ray_io_cluster": "charts"}
    node = {**target, "SessionName": SESSION, "RayNodeType": "head", "IsHeadNode": "true", "Version": "2.60.0"}
    lines = [
        "# HELP up 1 if the scrape of the target succeeded",
        "# TYPE up gauge",
        f"up{_labels(**target)} 1.0 {t}",
        "# HELP ray_node_cpu_utilization Total CPU usage on a ray node",
        "# TYPE ray_node_cpu_utilization gauge",
        f"ray_node_cpu_utilization{_labels(**node)} {20 + (i * 7) % 60}.0 {t}",
        "# HELP ray_tasks Current number of tasks currently in a particular state.",
        "# TYPE ray_tasks gauge",
    ]
    finished, running = min(i * 5, 150), (0 if i > 30 else 8)
    for state, source, value in (
        ("FINISHED", "owner", finished),
        ("FAILED", "owner", i // 10),
        ("RUNNING", "executor", running),
        ("PENDING_NODE_ASSIGNMENT", "owner", 1),
    ):
        labels = {
            **target,
            "SessionName": SESSION,
            "State": state,
            "Source": source,
            "IsRetry": "0",
            "Name": "square",
            "Version": "2.60.0",
        }
        lines.append(f"ray_tasks{_labels(**labels)} {float(value)} {t}")
    return "\n".join(lines) + "\n"


def _write_session(store: LocalStore, cluster: str, name: str, scrapes: list[str]) -> SessionRef:
    ref = SessionRef("default", cluster, name)
    store.put(ref.node(NODE).node_key, NodeRecord(NODE, is_head=True, ip="10.0.0.1", start_ms=START_MS).to_json())
    data = "".join(scrapes).encode()
    if data:
        store.put(
            ref.node(NODE).segment_key(LogSegment("metrics-000001.prom", 0, 0, len(data), source="metrics")),
            encode(data),
        )
    m = SessionManifest(
        namespace="default",
        cluster=cluster,
        session_name=name,
        ray_version="2.60.0",
        start_ms=START_MS,
        end_ms=START_MS + 600_000,
        status=ENDED,
        last_seen_ms=START_MS + 600_000,
        nodes=[NodeRecord(NODE, is_head=True)],
    )
    store.put(m.ref.manifest_key, m.to_json())
    store.put(m.ref.index_key, m.to_json())
    return ref


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """An archive with a session that has Ray's task metrics and one whose collector archived no metrics."""
    root = tmp_path_factory.mktemp("archive")
    store = LocalStore(str(root))
    with_tasks = _write_session(store, "charts", SESSION, [_scrape(i) for i in range(SCRAPES)])
    without = _write_session(store, "quiet", "session_2026-11-25_21-00-00_000000_1", [])
    return str(root), with_tasks.id, without.id


def test_tasks_chart_draws_each_state(written, tmp_path):
    from tests.browser import browser, page_watch, served

    archive, with_tasks, _ = written
    with served(serve(archive, tmp_path)) as url, browser() as b, page_watch(b) as (page, problems):
        page.goto(f"{url}/sessions/{with_tasks}/overview")
        charts = charts_state(page)
        tasks = charts["tasks"]
        assert tasks["state"] == "drawn", tasks
        assert sorted(tasks["legend"]) == ["FAILED", "FINISHED", "PENDING_NODE_ASSIGNMENT", "RUNNING"]
        assert charts["cpu"]["legend"] == [f"CPU Usage: {INSTANCE} (head)"]
        assert charts["memory"]["state"] == charts["object-store"]["state"] == "empty"
        # 10 minutes at 1 s steps: 601 points, and the legend formats the hovered value with the chart's unit.
        assert page.evaluate("document.getElementById('charts-range').textContent") == "; one point every 1 s"
        box = page.locator("#chart-cpu .u-over").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        hovered = page.inner_text("#chart-cpu .u-legend .u-series:nth-child(2) .u-value")
        assert hovered.endswith("%") and 20 <= float(hovered[:-1]) < 80, hovered
        page.mouse.move(0, 0)
        page.screenshot(path=str(tmp_path / "tasks.png"), full_page=True)
        page.wait_for_load_state("networkidle")
        assert not problems.all(), problems.all()


def test_session_without_metrics_shows_the_empty_state(written, tmp_path):
    from tests.browser import browser, page_watch, served

    archive, _, without = written
    with served(serve(archive, tmp_path)) as url, browser() as b, page_watch(b) as (page, problems):
        page.goto(f"{url}/sessions/{without}/overview")
        charts = charts_state(page)
        for chart_id in CHARTS:
            assert charts[chart_id]["state"] == "empty" and charts[chart_id]["canvas"] is None, charts[chart_id]
            assert "No metrics archived for this session" in charts[chart_id]["text"]
        page.wait_for_load_state("networkidle")
        assert not problems.all(), problems.all()


def test_an_api_error_is_shown_in_the_chart(written, tmp_path):
    """The page shows the API's own error message (Prometheus's envelope) instead of a chart."""
    from tests.browser import browser, page_watch, served

    archive, with_tasks, _ = written
    body = json.dumps({"status": "error", "errorType": "unavailable", "error": "the archive's bucket did not answer"})
    with served(serve(archive, tmp_path)) as url, browser() as b, page_watch(b) as (page, problems):
        # The one fake: the API answering 503, at the network edge (the archive cannot be made to fail on cue).
        page.route(
            "**/prometheus/api/v1/query_range",
            lambda route: route.fulfill(status=503, content_type="application/json", body=body),
        )
        page.goto(f"{url}/sessions/{with_tasks}/overview")
        charts = charts_state(page)
        for chart_id in CHARTS:
            assert charts[chart_id]["state"] == "error", charts[chart_id]
            assert "unavailable: the archive's bucket did not answer" in charts[chart_id]["text"]
        assert "Jobs" in page.inner_text("body")  # the rest of the page is unaffected
        page.wait_for_load_state("networkidle")
        assert problems.console and all("503" in p for p in problems.all()), problems.all()
