"""What the panel page is told to ask and draw (historyserver/panels.py), on Ray 2.60's generated dashboards: the
queries Grafana would send (checked against tests/promql_panels.py, the oracle tests' independent interpolation)."""

from __future__ import annotations

import json

import pytest

from historyserver import panels
from tests import promql_panels
from tests.promql_panels import DASHBOARDS, GrafanaRequest

START, END = 1_795_000_000_000, 1_795_007_200_000  # a two-hour session


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.stem)
def test_every_target_is_interpolated_as_grafana_would(path):
    board = json.loads(path.read_text())
    url_vars = {"SessionName": ["session_2026-11-25_20-59-21_325155_1996"]}
    ctx = panels.render_context(board, url_vars, START, END, None)
    [oracle] = [d for d in promql_panels.load_dashboards(DASHBOARDS) if d.file == path.name]
    req = GrafanaRequest(
        values={"SessionName": "session_2026-11-25_20-59-21_325155_1996"},
        interval_ms=ctx["stepMs"],
        range_ms=END - START,
    )
    specs = {(p["id"], t["refId"]): t for r in ctx["rows"] for p in r["panels"] for t in p["targets"]}
    assert len(specs) == len(oracle.targets)
    for target in oracle.targets:
        sent = specs[(target.panel_id, target.ref_id)]
        assert sent["query"] == promql_panels.interpolate(target.expr, oracle, req), target.case_id
        assert "$" not in sent["query"], sent["query"]


def test_one_panel_with_its_unit_min_overrides_and_legend():
    board = json.loads((DASHBOARDS / "default_grafana_dashboard.json").read_text())
    ctx = panels.render_context(board, {"Cluster": ["e2e"]}, START, END, 41)
    p = ctx["panel"]
    assert (p["title"], p["unit"], p["min"], p["max"], p["stack"]) == ("Cluster Utilization", "%", 0.0, None, False)
    assert p["legend"]["columns"] == ["max", "avg", "current"] and p["legend"]["sortDesc"] is True
    assert {"alias": "MAX", "dashes": True, "color": "#1F60C4", "fill": 0, "stack": False} in p["overrides"]
    assert 'ray_io_cluster=~"e2e"' in p["targets"][0]["query"]
    assert ctx["stepMs"] == 5_000 and ctx["startMs"] % 5_000 == 0 and ctx["endMs"] >= END


def test_rows_keep_the_dashboards_layout_and_collapsed_rows():
    board = json.loads((DASHBOARDS / "default_grafana_dashboard.json").read_text())
    rows = panels.render_context(board, {}, START, END, None)["rows"]
    assert [r["collapsed"] for r in rows] == [False] * 5 + [True]
    assert sum(len(r["panels"]) for r in rows) == 41


def test_unknown_panel_names_the_panels_it_has():
    board = json.loads((DASHBOARDS / "default_grafana_dashboard.json").read_text())
    with pytest.raises(panels.PanelNotFound, match="no panel 999; its panels are"):
        panels.render_context(board, {}, START, END, 999)


def test_short_sessions_step_at_one_second_long_ones_at_nice_intervals():
    assert panels.interval_ms(60_000) == 1_000
    assert panels.interval_ms(7_200_000) == 5_000
    assert panels.interval_ms(86_400_000) == 60_000
