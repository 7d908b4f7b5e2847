"""The Prometheus API as Grafana in Ray's Metrics tab uses it, and over a real Ray cluster's scraped metrics."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import duckdb

from tests.prometheus_api_helpers import API, HALF_HOUR, T0, A, B, C, Spy, archive, client, err, make_client, ok, secs  # noqa: F401 (fixtures)

# -- Grafana in Ray's Metrics tab ------------------------------------------------------------------------------


def test_grafana_health_names_the_archive_datasource_when_configured(archive, client, tmp_path):
    # No Grafana and no archived dashboard to draw (a written session): the UI hides its charts.
    unhealthy = client.get(f"/sessions/{A.id}/api/grafana_health").json()
    assert unhealthy["result"] is False and "no archived Ray dashboard" in unhealthy["data"]["exception"]
    assert client.get(f"/sessions/{A.id}/api/prometheus_health").json()["result"] is True  # our API answers
    with make_client(
        archive, tmp_path / "cache", grafana_url="http://grafana.example:3000/", grafana_datasource="Archive DS"
    ) as c:
        health = c.get(f"/sessions/{A.id}/api/grafana_health")
        assert health.status_code == 200
        body = health.json()
        assert body["result"] is True and body["msg"] == "Grafana running"
        data = body["data"]
        assert data["grafanaHost"] == f"/sessions/{A.id}/grafana"
        assert data["dashboardUids"]["default"] == "rayDefaultDashboard"
        assert data["dashboardUids"]["serveDeployment"] == "rayServeDeploymentDashboard"
        assert data["dashboardDatasource"] == "Archive DS" and data["sessionName"] == A.name
        assert data["grafanaOrgId"] == "1" and data["grafanaClusterFilter"] == "alpha"
        assert c.get(f"/sessions/{A.id}/api/prometheus_health").json()["result"] is True


def test_the_grafana_redirect_keeps_parameters_and_fixes_the_range(archive, client, tmp_path):
    with make_client(archive, tmp_path / "cache", grafana_url="http://grafana.example:3000") as c:
        # What Ray's Metrics tab requests: grafanaHost + /d/<uid>/?...&from=now-5m&to=now
        url = (
            f"/sessions/{A.id}/grafana/d/rayDefaultDashboard/?orgId=1&theme=light&refresh=5s"
            f"&var-SessionName={A.name}&var-datasource=Prometheus&var-Cluster=alpha&from=now-5m&to=now"
        )
        resp = c.get(url, follow_redirects=False)
        assert resp.status_code == 307
        target = urlsplit(resp.headers["location"])
        assert (target.scheme, target.netloc, target.path) == (
            "http",
            "grafana.example:3000",
            "/d/rayDefaultDashboard/",
        )
        params = parse_qsl(target.query)
        assert dict(params) == {
            "orgId": "1",
            "theme": "light",
            "refresh": "5s",
            "var-SessionName": A.name,
            "var-Cluster": "alpha",
            "from": str(A.start_ms),
            "to": str(A.end_ms),
            "var-datasource": "Rayhistory archive",
        }
        assert len(params) == len(dict(params))
        solo = c.get(
            f"/sessions/{A.id}/grafana/d-solo/rayDefaultDashboard/default-dashboard?panelId=41&from=now-1h&to=now",
            follow_redirects=False,
        )
        assert solo.status_code == 307
        q = dict(parse_qsl(urlsplit(solo.headers["location"]).query))
        assert q["panelId"] == "41" and q["from"] == str(A.start_ms) and q["var-SessionName"] == A.name
        assert c.get(f"/sessions/{A.id}/grafana/login", follow_redirects=False).status_code == 404
    assert client.get(f"/sessions/{A.id}/grafana/d/x/", follow_redirects=False).status_code == 404


# -- a real Ray cluster's metrics --------------------------------------------------------------------------------


def test_a_real_sessions_ray_metrics(finished_cluster, tmp_path):
    fc = finished_cluster
    with make_client(Path(fc.local_archive), tmp_path / "cache") as c:
        entry = c.app.state.services.catalog.get(fc.ref.id)
        tables = c.app.state.services.warehouse.db(entry).dir
        con = duckdb.connect()
        n_series, n_samples = (
            con.execute(f"SELECT count(*) FROM read_parquet('{tables / f}')").fetchone()[0]
            for f in ("metric_series.parquet", "metric_samples.parquet")
        )
        assert n_series > 50 and n_samples > n_series
        scope = f"/sessions/{fc.ref.id}{API}"
        names = ok(c.get(f"{scope}/label/__name__/values"))
        assert "up" in names and sum(n.startswith("ray_") for n in names) > 20
        # Ray labels its series with the session's name: what the catalog prunes on.
        assert ok(c.get(f"{scope}/label/SessionName/values")) == [fc.ref.session]
        m = entry.manifest
        rng = {"start": secs(m.start_ms), "end": secs(entry.end_ms), "step": "5"}
        spy = Spy(c)
        everything = ok(
            c.get(f"{API}/query_range", params={**rng, "query": 'sum by (SessionName) (up{ray_io_cluster=~"e2e"})'})
        )
        assert spy.opened == [fc.ref.id]
        [series] = everything["result"]
        assert max(float(v) for _, v in series["values"]) >= 1  # the last scrape may fail (up 0) as Ray stops
        # The demo's failures, as the catalog-derived series count them by the end of the session.
        end = {"time": secs(entry.end_ms)}
        # (read only from tables already built: poll, as the background compaction of the ended session may be
        # replacing them at this moment)
        deadline = time.monotonic() + 60
        query = {**end, "query": "rayhistory_session_failed_jobs"}
        while not (failed_jobs := ok(c.get(f"{scope}/query", params=query)))["result"]:
            assert time.monotonic() < deadline, "no failed-jobs series for the ended session"
            time.sleep(0.2)
        assert [r["value"][1] for r in failed_jobs["result"]] == ["1"]
        failed_tasks = ok(c.get(f"{scope}/query", params={**end, "query": "rayhistory_session_failed_tasks"}))
        assert int(failed_tasks["result"][0]["value"][1]) >= 2
        cpu = ok(
            c.get(
                f"{scope}/query_range",
                params={**rng, "query": 'avg(ray_node_cpu_utilization{SessionName=~"%s"})' % fc.ref.session},
            )
        )
        assert cpu["result"] and all(0 <= float(v) <= 100 * 64 for _, v in cpu["result"][0]["values"])
