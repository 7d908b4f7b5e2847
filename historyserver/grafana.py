"""Ray's Grafana dashboards for archived sessions: every query goes through a `datasource` template variable.

Ray generates its dashboards (session dir `metrics/grafana/dashboards/*.json`) with a hidden datasource variable
that follows Grafana's default Prometheus datasource, and old-style datasource references (a variable name as a
string). `with_datasource_variable` keeps the dashboard Ray wrote for the session (uid, title, version, panels, its
queries) and changes only how it picks its datasource, so that one dashboard serves a live cluster (its
Prometheus) and a dead one (the history server's archive datasource):

- the variable `datasource` (type `datasource`, query `prometheus`) is shown, and defaults to the given datasource
  name; Ray's Metrics tab still overrides it with `var-datasource=` in the URL;
- every Prometheus reference of panels, targets, query variables and annotations becomes the reference object
  `{"type": "prometheus", "uid": "${datasource}"}` (Grafana resolves a variable in `uid` by name or uid);
- values Grafana reads as "unset" but that Grafana's published schema types otherwise (a `null` timeFrom, an empty
  `current` of a variable, `refresh: false`) are written the way the schema spells "unset", so the result validates
  against dashboards/schema/dashboard.schema.json. Grafana itself would read both forms the same.

Pure functions over dicts: the history server serves per-session dashboards through them, and dashboards/build.py
writes the copies in dashboards/ray/.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

DATASOURCE_VARIABLE = "datasource"
ARCHIVE_DATASOURCE = "Rayhistory archive"  # the name dashboards/provisioning/datasources.yaml gives the archive

# Built-in pseudo datasources: references to them are not Prometheus queries. Named as a bare string (the old form),
# they become the reference objects Grafana itself writes for them.
_BUILTIN_REFS = {
    "-- Grafana --": {"type": "grafana", "uid": "-- Grafana --"},
    "-- Mixed --": {"type": "datasource", "uid": "-- Mixed --"},
    "-- Dashboard --": {"type": "datasource", "uid": "-- Dashboard --"},
}
_NOT_PROMETHEUS_NAMES = {*_BUILTIN_REFS, "grafana"}
_NOT_PROMETHEUS_TYPES = {"grafana", "datasource", "__expr__", "dashboard"}
_QUERY_VARIABLE_TYPES = {"query", "adhoc", "groupby"}


class DashboardError(ValueError):
    """The input is not a dashboard this module can rewrite (names what is wrong)."""


def datasource_ref() -> dict[str, str]:
    return {"type": "prometheus", "uid": "${" + DATASOURCE_VARIABLE + "}"}


def with_datasource_variable(dashboard: dict, default_datasource: str = ARCHIVE_DATASOURCE) -> dict:
    """A copy of `dashboard` whose Prometheus queries all use the `datasource` variable (default: the given name)."""
    if not isinstance(dashboard, dict) or not isinstance(dashboard.get("panels", []), list):
        raise DashboardError("a Grafana dashboard is a JSON object with a `panels` list")
    if not default_datasource:
        raise DashboardError("default_datasource must name a Grafana datasource")
    out = copy.deepcopy(dashboard)
    _drop_nulls(out)
    if out.get("refresh") in (False, None):
        out["refresh"] = ""  # Grafana's "no auto-refresh"; older dashboards (Ray's) write false
    _set_variable(out, default_datasource)
    for panel in iter_panels(out.get("panels", [])):
        _rewrite_panel(panel)
    for annotation in (out.get("annotations") or {}).get("list", []) or []:
        _drop_nulls(annotation)
        annotation["datasource"] = _rewrite_ref(annotation.get("datasource"))
    return out


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, rows and the panels of collapsed rows included."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def iter_targets(dashboard: dict) -> Iterator[tuple[dict, dict]]:
    """(panel, target) for every query of every panel."""
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets") or []:
            yield panel, target


def _set_variable(dashboard: dict, default_datasource: str) -> None:
    templating = dashboard.get("templating") or {}
    variables = templating.get("list") or []
    dashboard["templating"] = {**templating, "list": variables}
    current = {"selected": True, "text": default_datasource, "value": default_datasource}
    existing = [v for v in variables if v.get("name") == DATASOURCE_VARIABLE]
    if existing and existing[0].get("type") != "datasource":
        raise DashboardError(
            f"the dashboard already has a variable `{DATASOURCE_VARIABLE}` of type "
            f"{existing[0].get('type')!r}; it cannot also be the datasource variable"
        )
    if not existing:
        variables.insert(0, {"name": DATASOURCE_VARIABLE, "type": "datasource"})
    for variable in variables:
        _drop_nulls(variable)
        if variable.get("name") == DATASOURCE_VARIABLE:
            # Ray hides it (hide: 2); shown, a user can switch one dashboard between live and archived data.
            variable.update(
                {
                    "query": "prometheus",
                    "current": current,
                    "options": [],
                    "hide": 0,
                    "label": variable.get("label") or "Data source",
                    "regex": variable.get("regex", ""),
                }
            )
            continue
        cur = variable.get("current")
        if isinstance(cur, dict) and not ("text" in cur and "value" in cur):
            del variable["current"]  # `{"selected": false}`: nothing chosen, as if absent
        if variable.get("type") in _QUERY_VARIABLE_TYPES and _is_prometheus(variable.get("datasource")):
            variable["datasource"] = datasource_ref()


def _rewrite_panel(panel: dict) -> None:
    _drop_nulls(panel)
    if panel.get("type") == "row":
        return  # rows hold no queries; their nested panels are visited by iter_panels
    targets = panel.get("targets") or []
    if "datasource" in panel or targets:
        panel["datasource"] = _rewrite_ref(panel.get("datasource"))
    for target in targets:
        target["datasource"] = _rewrite_ref(target.get("datasource"))


def _is_prometheus(ref: Any) -> bool:
    """A reference Grafana resolves to a Prometheus datasource: absent (the panel's or the default one), a name, a
    variable, or a ref of type prometheus; not the built-in Grafana, Mixed, Dashboard or expression sources."""
    if ref is None:
        return True
    if isinstance(ref, str):
        return ref not in _NOT_PROMETHEUS_NAMES
    if isinstance(ref, dict):
        return ref.get("type") not in _NOT_PROMETHEUS_TYPES and ref.get("uid") not in _NOT_PROMETHEUS_NAMES
    return False


def _rewrite_ref(ref: Any) -> Any:
    if _is_prometheus(ref):
        return datasource_ref()
    if isinstance(ref, str) and ref in _BUILTIN_REFS:
        return dict(_BUILTIN_REFS[ref])
    return ref


def _drop_nulls(obj: dict) -> None:
    """Remove `key: null` at this level only: Grafana reads it as an absent key (deeper, a null can mean something,
    e.g. a threshold step's `value: null` is minus infinity, so it is not touched)."""
    for key in [k for k, v in obj.items() if v is None]:
        del obj[key]
