"""dashboards/: every dashboard validates against the schema derived from @grafana/schema, Ray's dashboards query
through the `datasource` variable, the provisioning files name what exists, and the Rayhistory dashboards' queries
parse and return data from a real Prometheus holding samples of the metrics they use."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import promql_parser
import pytest
import yaml

from collector.health import Health
from collector.sources.dashboard_api import PollStats
from collector.sources.folders import event_stats, poll_stats, scrape_stats
from collector.sources.http_events import HttpEventStats
from collector.sources.metrics import ScrapeStats
from collector.stats import ComponentStats
from historyserver.grafana import (
    ARCHIVE_DATASOURCE,
    DashboardError,
    iter_panels,
    iter_targets,
    with_datasource_variable,
)
from tests import needs
from tests.servers import prometheus as prometheus_server

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
SCHEMA = json.loads((DASHBOARDS / "schema" / "dashboard.schema.json").read_text())
REFERENCE = needs.REFERENCE / "grafana" / "generated"
ALL_JSON = sorted(p for p in DASHBOARDS.rglob("*.json") if "schema" not in p.relative_to(DASHBOARDS).parts)
RAY_JSON = sorted((DASHBOARDS / "ray").glob("*.json"))
HISTORY = DASHBOARDS / "rayhistory" / "history.json"
COLLECTOR = DASHBOARDS / "rayhistory" / "collector.json"
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
MOUNT = "/var/lib/grafana/dashboards"  # where dashboards/README.md mounts this folder
RAY_FILES = {
    "data_grafana_dashboard.json",
    "data_llm_grafana_dashboard.json",
    "default_grafana_dashboard.json",
    "serve_deployment_grafana_dashboard.json",
    "serve_grafana_dashboard.json",
    "serve_llm_grafana_dashboard.json",
    "serve_llm_sglang_grafana_dashboard.json",
    "train_grafana_dashboard.json",
}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def schema_errors(dashboard: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(dashboard)]


# ---------------------------------------------------------------------------------------------------- the schema


@pytest.mark.parametrize("path", ALL_JSON, ids=lambda p: str(p.relative_to(DASHBOARDS)))
def test_dashboard_validates_against_the_grafana_schema(path):
    assert schema_errors(load(path)) == []


def test_folder_holds_ray_s_eight_dashboards_and_ours():
    assert {p.name for p in RAY_JSON} == RAY_FILES
    assert HISTORY.exists() and COLLECTOR.exists()


def test_schema_comes_from_grafana_s_package_and_rejects_broken_dashboards():
    assert "@grafana/schema@" in SCHEMA["$comment"] and "ts-json-schema-generator@" in SCHEMA["$comment"]
    good = load(HISTORY)
    assert schema_errors(good) == []
    breakages = {
        "gridPos as a string": lambda d: d["panels"][1].__setitem__("gridPos", "0,1,6,4"),
        "gridPos.h as a string": lambda d: d["panels"][1]["gridPos"].__setitem__("h", "4"),
        "panel without a type": lambda d: d["panels"][1].pop("type"),
        "datasource as a bare name": lambda d: d["panels"][1].__setitem__("datasource", "Prometheus"),
        "targets as an object": lambda d: d["panels"][1].__setitem__("targets", {"expr": "up"}),
        "no schemaVersion": lambda d: d.pop("schemaVersion"),
        "unknown variable type": lambda d: d["templating"]["list"][1].__setitem__("type", "dropdown"),
        "variable without a name": lambda d: d["templating"]["list"][1].pop("name"),
        "row without its panels": lambda d: d["panels"][0].pop("panels") and d["panels"][0].pop("collapsed"),
    }
    for what, breakage in breakages.items():
        broken = copy.deepcopy(good)
        breakage(broken)
        assert schema_errors(broken), f"the schema accepts a dashboard with {what}"


def test_uids_are_unique_and_ray_s_are_kept():
    uids = [load(p)["uid"] for p in ALL_JSON]
    assert len(uids) == len(set(uids)), uids
    assert "rayDefaultDashboard" in uids  # Ray's Metrics tab embeds panels of this uid


# ---------------------------------------------------------------------------------------------------- the transform


def _references(dashboard: dict) -> list:
    refs = [p["datasource"] for p in iter_panels(dashboard["panels"]) if "datasource" in p]
    refs += [t.get("datasource") for _, t in iter_targets(dashboard)]
    refs += [v["datasource"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    return refs


@pytest.mark.parametrize("path", RAY_JSON, ids=lambda p: p.name)
def test_ray_dashboard_queries_go_through_the_datasource_variable(path):
    dashboard = load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus" and ds["hide"] == 0
    assert ds["current"]["value"] == ARCHIVE_DATASOURCE
    targets = list(iter_targets(dashboard))
    assert targets and all(t["datasource"] == DS_REF for _, t in targets)
    assert all(ref == DS_REF for ref in _references(dashboard))


@pytest.mark.parametrize("name", sorted(RAY_FILES))
def test_committed_ray_dashboards_are_the_transform_of_ray_s(name):
    original = load(needs.reference("grafana", "generated", name))
    built = with_datasource_variable(original, ARCHIVE_DATASOURCE)
    assert built == load(DASHBOARDS / "ray" / name), "rerun: python dashboards/build.py <Ray's generated dashboards>"
    for key in ("uid", "title", "version", "schemaVersion", "tags", "rayMeta"):
        assert built.get(key) == original.get(key), key
    # the queries themselves are Ray's, one for one
    assert [t["expr"] for _, t in iter_targets(built)] == [t["expr"] for _, t in iter_targets(original)]
    assert [p["id"] for p in iter_panels(built["panels"])] == [p["id"] for p in iter_panels(original["panels"])]
    assert original["templating"]["list"][0]["current"] == {"selected": False}, "input left untouched"


def test_transform_is_idempotent_and_takes_the_default_datasource():
    dashboard = load(DASHBOARDS / "ray" / "default_grafana_dashboard.json")
    assert with_datasource_variable(dashboard, ARCHIVE_DATASOURCE) == dashboard
    live = with_datasource_variable(dashboard, "Prometheus")
    assert live["templating"]["list"][0]["current"] == {"selected": True, "text": "Prometheus", "value": "Prometheus"}


def test_transform_adds_the_variable_to_a_dashboard_without_one():
    old = {
        "title": "t",
        "uid": "u",
        "version": 7,
        "schemaVersion": 27,
        "refresh": False,
        "gnetId": None,
        "annotations": {
            "list": [{"builtIn": 1, "datasource": "-- Grafana --", "enable": True, "name": "a", "iconColor": "red"}]
        },
        "templating": {
            "list": [
                {
                    "name": "Node",
                    "type": "query",
                    "datasource": "Prometheus",
                    "query": "up",
                    "current": {"selected": False},
                    "label": None,
                }
            ]
        },
        "panels": [
            {"type": "graph", "id": 1, "datasource": "Prometheus", "timeFrom": None, "targets": [{"expr": "up"}]},
            {
                "type": "row",
                "id": 2,
                "collapsed": True,
                "panels": [
                    {
                        "type": "stat",
                        "id": 3,
                        "targets": [{"expr": "up", "datasource": {"uid": "abc"}}],
                        "fieldConfig": {
                            "defaults": {
                                "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
                            },
                            "overrides": [],
                        },
                    }
                ],
            },
            {"type": "text", "id": 4, "options": {"content": "hello"}},
            {
                "type": "timeseries",
                "id": 5,
                "datasource": "-- Mixed --",
                "targets": [{"expr": "up"}, {"datasource": {"type": "__expr__", "uid": "__expr__"}, "expression": "A"}],
            },
        ],
    }
    new = with_datasource_variable(old, "Rayhistory archive")
    assert new["uid"] == "u" and new["version"] == 7
    first = new["templating"]["list"][0]
    assert (first["name"], first["type"], first["query"]) == ("datasource", "datasource", "prometheus")
    node = new["templating"]["list"][1]
    assert node["datasource"] == DS_REF and "current" not in node and "label" not in node
    panels = {p["id"]: p for p in iter_panels(new["panels"])}
    assert panels[1]["datasource"] == DS_REF and panels[1]["targets"][0]["datasource"] == DS_REF
    assert "timeFrom" not in panels[1]
    assert panels[3]["datasource"] == DS_REF and panels[3]["targets"][0]["datasource"] == DS_REF
    assert panels[3]["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["value"] is None  # meaningful null kept
    assert "datasource" not in panels[4]  # no queries, nothing to point
    assert panels[5]["datasource"] == {"type": "datasource", "uid": "-- Mixed --"}  # not Prometheus: kept
    assert panels[5]["targets"][0]["datasource"] == DS_REF
    assert panels[5]["targets"][1]["datasource"]["type"] == "__expr__"
    assert new["annotations"]["list"][0]["datasource"] == {"type": "grafana", "uid": "-- Grafana --"}
    assert new["refresh"] == "" and "gnetId" not in new
    assert old["panels"][0]["datasource"] == "Prometheus"  # a copy, the input is unchanged
    assert schema_errors(new) == []


def test_transform_refuses_what_it_cannot_rewrite():
    with pytest.raises(DashboardError, match="datasource"):
        with_datasource_variable({"panels": [], "templating": {"list": [{"name": "datasource", "type": "custom"}]}})
    with pytest.raises(DashboardError, match="panels"):
        with_datasource_variable({"panels": "none"})


def test_build_script_writes_one_file_per_dashboard(tmp_path):
    source = tmp_path / "generated"
    source.mkdir()
    (source / "default_grafana_dashboard.json").write_text(
        (DASHBOARDS / "ray" / "default_grafana_dashboard.json").read_text()
    )
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(DASHBOARDS / "build.py"), str(source), "--out", str(out), "--datasource", "Prometheus"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    built = load(out / "default_grafana_dashboard.json")
    assert built["templating"]["list"][0]["current"]["value"] == "Prometheus"
    assert built["uid"] == "rayDefaultDashboard"


# ---------------------------------------------------------------------------------------------------- provisioning


def test_provisioning_names_existing_folders_and_the_datasources_dashboards_default_to():
    datasources = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources.yaml").read_text())
    assert datasources["apiVersion"] == 1
    by_name = {d["name"]: d for d in datasources["datasources"]}
    archive = by_name[ARCHIVE_DATASOURCE]
    assert archive["type"] == "prometheus" and archive["url"].endswith("/prometheus")
    assert archive["jsonData"]["httpMethod"] == "POST"
    live = [d for d in datasources["datasources"] if d is not archive]
    assert live and all(d["type"] == "prometheus" and d["jsonData"]["httpMethod"] == "POST" for d in live)
    assert sum(bool(d.get("isDefault")) for d in datasources["datasources"]) == 1
    assert len({d["uid"] for d in datasources["datasources"]}) == len(datasources["datasources"])

    providers = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards.yaml").read_text())
    assert providers["apiVersion"] == 1
    served = set()
    for provider in providers["providers"]:
        assert provider["type"] == "file" and provider["name"] and provider["folder"]
        path = provider["options"]["path"]
        assert path.startswith(MOUNT + "/"), path
        folder = DASHBOARDS / path[len(MOUNT) + 1 :]
        assert folder.is_dir() and list(folder.glob("*.json")), f"{path} names no folder of dashboards/"
        served |= set(folder.glob("*.json"))
    assert served == set(ALL_JSON), "every dashboard is provisioned"

    for path in ALL_JSON:
        default = load(path)["templating"]["list"][0]
        assert default["name"] == "datasource" and default["current"]["value"] in by_name


# ---------------------------------------------------------------------------------------------------- our queries

# Grafana's values for the test: the range of the synthetic data below, a one-minute step.
RANGE_S, STEP_S = 7200, 60
BUILTINS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "2h"}


def substitute(text: str, dashboard: dict) -> str:
    for name, value in BUILTINS.items():
        text = text.replace(name, value)
    for variable in dashboard["templating"]["list"]:
        text = re.sub(r"\$\{" + variable["name"] + r"\}|\$" + variable["name"] + r"\b", ".*", text)
    assert "$" not in text, text
    return text


def queries(path: Path) -> list[tuple[str, dict, str]]:
    dashboard = load(path)
    return [
        (panel["title"], target, substitute(target["expr"], dashboard)) for panel, target in iter_targets(dashboard)
    ]


def variable_selectors(path: Path) -> list[tuple[str, str]]:
    """(label, series selector) of every label_values() variable."""
    dashboard = load(path)
    out = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert m, variable["query"]
            out.append((m.group(2), substitute(m.group(1), dashboard)))
    return out


@pytest.mark.parametrize("path", [HISTORY, COLLECTOR], ids=lambda p: p.stem)
def test_rayhistory_queries_parse(path):
    for title, _, expr in queries(path):
        assert promql_parser.parse(expr) is not None, title
    for _, selector in variable_selectors(path):
        promql_parser.parse(selector)


def _metric_names(path: Path) -> set[str]:
    names = set()
    for _, _, expr in queries(path):
        names |= set(re.findall(r"\b(rayhistory_[a-z_]+)\b", expr))
    for _, selector in variable_selectors(path):
        names |= set(re.findall(r"\b(rayhistory_[a-z_]+)\b", selector))
    return names


def collector_exposition() -> str:
    """What a collector's /metrics shows, with sources and sinks registered as the topology registers them."""
    health = Health(stale_after=60)
    health.components.replace(
        {
            ("ray_events", "source"): lambda: event_stats(HttpEventStats().snapshot()),
            ("metrics", "source"): lambda: scrape_stats(ScrapeStats()),
            ("api", "source"): lambda: poll_stats(PollStats()),
            ("archive", "sink"): lambda: ComponentStats(errors={"store": 0}),
        }
    )
    health.shipped("logs", "archive", 1, 10)
    health.succeeded("archive")
    health.failed("archive")
    return health.metrics().decode()


def test_collector_dashboard_uses_only_the_collector_s_metrics():
    exposed = set(re.findall(r"^(rayhistory_\w+?)(?:\{| )", collector_exposition(), re.M))
    used = _metric_names(COLLECTOR)
    assert len(used) >= 12 and used <= exposed, used - exposed
    # every counter the collector exposes is on the dashboard (the _created series are not counters)
    assert {n for n in exposed if not n.endswith("_created")} <= used


def test_history_dashboard_uses_the_catalog_series():
    assert _metric_names(HISTORY) == {
        "rayhistory_session_up",
        "rayhistory_session_duration_seconds",
        "rayhistory_session_failed_jobs",
    }


# ---------------------------------------------------------------------------------------------------- real Prometheus


def _labels(labels: dict) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


# (namespace, cluster, session, status, start, end) in minutes before the end of the data, and its failed jobs
SESSIONS = [
    ("ml", "train-a", "session_2026-11-25_10-00-00_000001_1", "ended", 110, 60, 2),
    ("ml", "train-a", "session_2026-11-25_11-30-00_000002_1", "running", 30, 0, None),
    ("default", "local", "session_2026-11-25_10-10-00_000003_1", "unfinished", 100, 80, None),
    ("default", "local", "session_2026-11-25_11-00-00_000004_1", "ended", 50, 20, 0),
]


def history_samples(end: int) -> str:
    """The catalog's series as the archive datasource shows them: one point a minute while a session lives."""
    lines = []
    for ns, cluster, session, status, start_min, end_min, failed in SESSIONS:
        labels = _labels({"namespace": ns, "ray_io_cluster": cluster, "SessionName": session, "status": status})
        start = end - start_min * 60
        for t in range(start, end - end_min * 60 + 1, 60):
            lines.append(f"rayhistory_session_up{{{labels}}} 1 {t}")
            lines.append(f"rayhistory_session_duration_seconds{{{labels}}} {t - start} {t}")
            if failed is not None:
                lines.append(f"rayhistory_session_failed_jobs{{{labels}}} {failed} {t}")
    return "\n".join(sorted(lines, key=lambda line: (line.split("{")[0], line.split("}")[0], int(line.split()[-1]))))


def collector_samples(end: int) -> str:
    """Two collectors scraped every 15 s: steady uploads, a few failed cycles on one, events received."""
    series: dict[str, list[str]] = {}
    for n, instance in enumerate(["10.0.0.1:8090", "10.0.0.2:8090"]):
        base = {"job": "rayhistory-collector", "instance": instance}
        for i, t in enumerate(range(end - RANGE_S, end + 1, 15)):

            def add(name: str, value: float, **labels: str) -> None:  # called within this iteration only
                series.setdefault(f"{name}{{{_labels({**base, **labels})}}}", []).append(f"{value} {t}")  # noqa: B023

            for source in ("logs", "metrics", "ray_events"):
                add("rayhistory_collector_shipped_bytes_total", 4096 * i * (n + 1), source=source, sink="archive")
                add("rayhistory_collector_shipped_segments_total", i, source=source, sink="archive")
            add("rayhistory_collector_errors_total", i // 40 if n else 0, sink="archive")
            add("rayhistory_collector_last_success_timestamp_seconds", t - 3, sink="archive")
            add("rayhistory_collector_lag_seconds", 3 + n, sink="archive")
            add("rayhistory_collector_spool_bytes", 1000 * (i % 7))
            for what in ("archive", "session"):  # the second collector waited for its archive at first
                add("rayhistory_collector_waiting", int(n == 1 and what == "archive" and i < 4), what=what)
            for component, kind, error_types in (
                ("logs", "source", ()),
                ("ray_events", "source", ("refused", "write")),
                ("metrics", "source", ("scrape", "write")),
                ("api", "source", ("request", "auth", "write")),
                ("sls", "sink", ("request", "quota")),
                ("archive", "sink", ("store",)),
            ):
                for field in ("received", "received_bytes", "sent", "sent_bytes", "dropped", "retries"):
                    add(
                        f"rayhistory_collector_component_{field}_total",
                        i * (7 if "bytes" in field else 1),
                        component=component,
                        kind=kind,
                    )
                for error_type in error_types:
                    add(
                        "rayhistory_collector_component_errors_total",
                        i // 40,
                        component=component,
                        kind=kind,
                        error_type=error_type,
                    )
                add("rayhistory_collector_component_lag_bytes", 5000 * (i % 3), component=component, kind=kind)
    return "\n".join(f"{key} {point}" for key, points in series.items() for point in points)


def run_panel_queries(server: prometheus_server.Prometheus, path: Path, end: int) -> dict[str, list]:
    results = {}
    for title, target, expr in queries(path):
        if target.get("instant"):
            result = server.query(expr, end)["result"]
        else:
            result = server.query_range(expr, end - RANGE_S, end, STEP_S)["result"]
        assert result, f"{path.stem}: panel {title!r} ({target['refId']}) returns no data: {expr}"
        key = f"{title}/{target['refId']}"
        assert key not in results, f"{path.stem}: two panels titled {title!r}"
        results[key] = result
    for label, selector in variable_selectors(path):
        assert server.client is not None
        answer = server.client.get(
            f"/api/v1/label/{label}/values", params={"match[]": selector, "start": end - RANGE_S, "end": end}
        ).json()
        assert answer["status"] == "success" and answer["data"], f"{path.stem}: variable over {label}: {answer}"
    return results


def test_rayhistory_panels_return_data_from_a_real_prometheus(tmp_path):
    needs.prometheus()
    end = int(time.time()) // 60 * 60 - 600
    samples = tmp_path / "samples.om"
    samples.write_text(history_samples(end) + "\n" + collector_samples(end) + "\n# EOF\n")
    with prometheus_server.running_prometheus(samples, tmp_path) as server:
        history = run_panel_queries(server, HISTORY, end)
        collector = run_panel_queries(server, COLLECTOR, end)

    def scalar(key: str, results: dict | None = None) -> float:
        (sample,) = (results or history)[key]
        return float(sample["value"][1])

    assert scalar("Collectors/A", collector) == 2
    assert scalar("Worst archive lag/A", collector) == 4
    assert scalar("Failed upload cycles/A", collector) == pytest.approx(RANGE_S // 15 // 40, rel=0.1)

    assert scalar("Sessions/A") == 4
    assert scalar("Running/A") == 1
    assert scalar("Unfinished/A") == 1
    assert scalar("Sessions with failed jobs/A") == 1
    by_status = {s["metric"]["status"]: float(s["value"][1]) for s in history["Sessions by status/A"]}
    assert by_status == {"ended": 2, "running": 1, "unfinished": 1}
    started = sum(float(v) for s in history["Sessions started/A"] for _, v in s["values"])
    assert started == len(SESSIONS), "each session counted in exactly one interval"
    failed = {s["metric"]["ray_io_cluster"]: float(s["value"][1]) for s in history["Failed jobs by cluster/A"]}
    assert failed == {"train-a": 2, "local": 0}
    longest = {s["metric"]["SessionName"]: float(s["value"][1]) for s in history["Longest sessions/A"]}
    assert longest[SESSIONS[0][2]] == 50 * 60
