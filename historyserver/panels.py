"""Ray's Grafana panels without Grafana: what one panel (or a whole dashboard) of a session's archived dashboard asks
and how it is drawn, for the page that renders it from our Prometheus API (pages/static/panels.js).

Only what Ray 2.60's generated dashboards use, read the way Grafana reads it:
- the panel's targets with template variables and macros replaced as Grafana's Prometheus datasource does
  (`var-<name>` URL values first, then the variable's selection, "All" as its allValue or its options);
- the query step: Grafana's `$__interval` for the panel's range (range / max data points, rounded to a "nice"
  interval; at least 1 s, see MIN_STEP_MS);
- the legacy `graph` panel's unit, y-axis min/max, stacking, fill, bars, series overrides and legend options, and
  the `stat` / `gauge` / `piechart` panels' unit, min/max, thresholds and reducer.
The time range is always the session's life (a dead session's Ray UI asks `now-1h`, which would show nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# The archive datasource's scrape interval (dashboards/provisioning/datasources.yaml `timeInterval`): the lower bound
# of `$__interval` and the base of `$__rate_interval`, as in a Grafana reading the archive.
SCRAPE_INTERVAL_MS = 15_000
MAX_DATA_POINTS = 1_000  # about the pixel width of a full-width panel, which is what Grafana uses
# The step's lower bound. Grafana would use the scrape interval (15 s), which draws a session of a minute as four
# dots; the archive holds every sample the collector scraped (every 2 s in the demo), so a short dead session is
# drawn at 1 s steps. `$__rate_interval` still counts from the 15 s scrape interval, as Grafana's would.
MIN_STEP_MS = 1_000
PANEL_TYPES = ("graph", "timeseries", "stat", "gauge", "bargauge", "piechart")

_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
# Grafana's rangeUtil.roundInterval: a raw interval up to each bound becomes the nice interval beside it.
_ROUND = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)


class PanelNotFound(LookupError):
    """The dashboard has no panel with that id (names the ids it has)."""


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def round_interval(ms: float) -> int:
    for bound, nice in _ROUND:
        if ms <= bound:
            return nice
    return 31_536_000_000


def interval_ms(range_ms: int, max_points: int = MAX_DATA_POINTS) -> int:
    return max(round_interval(range_ms / max_points), MIN_STEP_MS)


def duration(ms: int) -> str:
    """Grafana's secondsToHms: the largest whole unit (60000 -> `1m`)."""
    s = ms / 1000
    for unit, size in (("y", 31_536_000), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if int(s // size):
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s" if int(s) else f"{ms}ms"


def _regular_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\\\'").replace('"', '\\"')


def _regex_escape(value: str) -> str:
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def _options(variable: dict) -> list[str]:
    query = variable.get("query")
    if variable.get("type") in ("custom", "interval") and isinstance(query, str):
        return [o.strip() for o in query.split(",") if o.strip()]
    return [o["value"] for o in variable.get("options") or [] if o.get("value") not in (None, "$__all")]


def _selected(variable: dict, url_values: list[str] | None) -> list[str] | None:
    """The variable's values: from the URL, else its saved selection; None for "All"."""
    if url_values:
        chosen: Any = url_values
    else:
        chosen = (variable.get("current") or {}).get("value")
    if chosen is None:
        return None if variable.get("includeAll") else _options(variable)[:1]
    values = chosen if isinstance(chosen, list) else [chosen]
    return None if "$__all" in values or "All" in values else [str(v) for v in values]


def _format(variable: dict, values: list[str] | None) -> str:
    multi_or_all = bool(variable.get("multi") or variable.get("includeAll"))
    if values is None:
        if variable.get("allValue") is not None:
            return str(variable["allValue"])  # inserted unescaped, as Grafana does
        values = _options(variable)
    if not multi_or_all or variable.get("type") in ("interval", "constant", "textbox"):
        return _regular_escape(values[0] if values else "")
    escaped = [_regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def variable_values(dashboard: dict, url_vars: Mapping[str, list[str]]) -> dict[str, str]:
    """Each template variable's text as Grafana pastes it into a query (`datasource` is not a query value)."""
    out = {}
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        name = variable.get("name")
        if name and variable.get("type") != "datasource":
            out[name] = _format(variable, _selected(variable, url_vars.get(name)))
    return out


def macros(step_ms: int, range_ms: int) -> dict[str, str]:
    rate_s = max(step_ms + SCRAPE_INTERVAL_MS, 4 * SCRAPE_INTERVAL_MS) / 1000
    range_s = round(range_ms / 1000)
    return {
        "__interval": duration(step_ms),
        "__interval_ms": str(step_ms),
        "__rate_interval": f"{rate_s:g}s",
        "__rate_interval_ms": str(int(rate_s * 1000)),
        "__range": f"{range_s}s",
        "__range_s": str(range_s),
        "__range_ms": str(range_ms),
    }


def interpolate(expr: str, values: Mapping[str, str], builtins: Mapping[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in values:
            return values[name]
        if name in builtins:
            return builtins[name]
        if name == "interval":  # the deprecated alias of $__interval, where no variable has the name
            return builtins["__interval"]
        return m.group(0)  # unknown: left as written, as Grafana leaves it

    return _VAR.sub(one, expr)


def _num(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _unit(panel: dict) -> str:
    unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
    if unit is None:
        unit = ((panel.get("yaxes") or [{}])[0] or {}).get("format")
    return str(unit or "short")


def panel_spec(panel: dict, values: Mapping[str, str], builtins: Mapping[str, str]) -> dict[str, Any]:
    """What the page needs to query and draw one panel."""
    kind = panel.get("type", "")
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    yaxis = (panel.get("yaxes") or [{}])[0] or {}
    targets = []
    for t in panel.get("targets") or []:
        if not t.get("expr") or t.get("hide"):
            continue
        targets.append(
            {
                "refId": t.get("refId", "A"),
                "expr": t["expr"],
                "query": interpolate(t["expr"], values, builtins),
                "legend": t.get("legendFormat") or "",
                "instant": bool(t.get("instant")) and t.get("range") is False,
                "format": t.get("format") or "time_series",
            }
        )
    legend = panel.get("legend") or {}
    options = panel.get("options") or {}
    return {
        "id": panel.get("id"),
        "type": kind,
        "supported": kind in PANEL_TYPES,
        "title": panel.get("title", ""),
        "description": panel.get("description", ""),
        "gridPos": panel.get("gridPos") or {"x": 0, "y": 0, "w": 12, "h": 8},
        "unit": _unit(panel),
        "min": _num(defaults.get("min", yaxis.get("min"))),
        "max": _num(defaults.get("max", yaxis.get("max"))),
        "decimals": _num(defaults.get("decimals", panel.get("decimals"))),
        "stack": bool(panel.get("stack")),
        "fill": _num(panel.get("fill")) if panel.get("fill") is not None else 1,
        "bars": bool(panel.get("bars")) and not panel.get("lines", True),
        "xMode": (panel.get("xaxis") or {}).get("mode", "time"),
        "nullPointMode": panel.get("nullPointMode") or "null",
        "overrides": [
            {k: v for k, v in o.items() if k in ("alias", "color", "dashes", "fill", "stack", "hiddenSeries")}
            for o in panel.get("seriesOverrides") or []
        ],
        "legend": {
            "show": bool(legend.get("show", True)) and (options.get("legend") or {}).get("showLegend", True),
            "columns": [c for c in ("min", "max", "avg", "current", "total") if legend.get(c) and legend.get("values")],
            "sort": legend.get("sort"),
            "sortDesc": bool(legend.get("sortDesc")),
            "hideZero": bool(legend.get("hideZero")),
            "hideEmpty": bool(legend.get("hideEmpty")),
        },
        "thresholds": defaults.get("thresholds"),
        "color": defaults.get("color"),
        "reduce": ((options.get("reduceOptions") or {}).get("calcs") or ["lastNotNull"])[0],
        "targets": targets,
    }


def find_panel(dashboard: dict, panel_id: int) -> dict:
    for panel in iter_panels(dashboard.get("panels") or []):
        if panel.get("id") == panel_id and panel.get("type") != "row":
            return panel
    ids = sorted(p["id"] for p in iter_panels(dashboard.get("panels") or []) if p.get("type") != "row" and "id" in p)
    raise PanelNotFound(f"dashboard {dashboard.get('uid')!r} has no panel {panel_id}; its panels are {ids}")


def render_context(
    dashboard: dict, url_vars: Mapping[str, list[str]], start_ms: int, end_ms: int, panel_id: int | None
) -> dict[str, Any]:
    """The JSON the page draws: one panel (`panel_id`) or the dashboard's rows and panels in its grid order."""
    range_ms = max(end_ms - start_ms, 1)
    step_ms = interval_ms(range_ms)
    values = variable_values(dashboard, url_vars)
    builtins = macros(step_ms, range_ms)
    # Grafana aligns the range to the step, so that every point of a panel falls on the same grid.
    start = start_ms // step_ms * step_ms
    end = -(-end_ms // step_ms) * step_ms
    context: dict[str, Any] = {
        "uid": dashboard.get("uid"),
        "title": dashboard.get("title", ""),
        "startMs": start,
        "endMs": end,
        "stepMs": step_ms,
        "variables": values,
    }
    if panel_id is not None:
        context["panel"] = panel_spec(find_panel(dashboard, panel_id), values, builtins)
        return context
    rows: list[dict[str, Any]] = []
    loose: list[dict[str, Any]] = []  # panels above the first row

    def grid(p: dict) -> tuple[int, int]:
        pos = p.get("gridPos") or {}
        return pos.get("y", 0), pos.get("x", 0)

    for panel in sorted(dashboard.get("panels") or [], key=grid):
        if panel.get("type") == "row":
            collapsed = bool(panel.get("collapsed"))
            rows.append(
                {
                    "title": panel.get("title", ""),
                    "collapsed": collapsed,
                    "y": (panel.get("gridPos") or {}).get("y", 0),
                    # A collapsed row keeps its panels inside it; an expanded row's follow it at the top level.
                    "panels": [panel_spec(p, values, builtins) for p in sorted(panel.get("panels") or [], key=grid)],
                }
            )
        else:
            (rows[-1]["panels"] if rows else loose).append(panel_spec(panel, values, builtins))
    if loose:
        rows.insert(0, {"title": "", "collapsed": False, "y": 0, "panels": loose})
    context["rows"] = rows
    return context
