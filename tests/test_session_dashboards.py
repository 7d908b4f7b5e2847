"""Ray's generated Grafana dashboards travel with the session: the head's collector archives them (source
`grafana`) and the server hands them out with a datasource variable, so their version matches the session's Ray."""

from __future__ import annotations

import json
from pathlib import Path

from historyserver.grafana import iter_targets
from tests.helpers import client_for

ROOT = Path(__file__).resolve().parents[1]


def test_a_real_sessions_dashboards_come_back_with_a_datasource_variable(finished_cluster, tmp_path):
    fc = finished_cluster
    with client_for(str(fc.local_archive), tmp_path / "cache") as c:
        listed = c.get(f"/api/v1/sessions/{fc.ref.id}/dashboards")
        assert listed.status_code == 200, listed.text
        uids = {d["uid"] for d in listed.json()["dashboards"]}
        committed = {
            json.loads(p.read_text())["uid"]: json.loads(p.read_text())
            for p in (ROOT / "dashboards" / "ray").glob("*.json")
        }
        assert uids == set(committed) and "rayDefaultDashboard" in uids
        board = c.get(f"/api/v1/sessions/{fc.ref.id}/dashboards/rayDefaultDashboard").json()
        [var] = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert var["type"] == "datasource" and var["current"]["text"] == "Rayhistory archive"
        targets = [t["expr"] for _, t in iter_targets(board)]
        assert targets == [t["expr"] for _, t in iter_targets(committed["rayDefaultDashboard"])]
        assert all(t["datasource"]["uid"] == "${datasource}" for _, t in iter_targets(board))
        missing = c.get(f"/api/v1/sessions/{fc.ref.id}/dashboards/noSuchDashboard")
        assert missing.status_code == 404 and "rayDefaultDashboard" in missing.json()["error"]["message"]
