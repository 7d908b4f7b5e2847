"""Every panel target of Ray's 8 generated Grafana dashboards, and the expression Grafana sends for it.

Grafana never sends a target's text as written: its Prometheus datasource first replaces template variables and
macros. This module does the same, so that the oracle test asks the engine exactly what Grafana would ask:
- a variable that is neither multi-value nor include-all: its value with `\\`, `'` and `"` escaped;
- a multi-value or include-all variable: each value regex-escaped (Grafana's prometheusSpecialRegexEscape), one
  value as is and several as `(a|b)`; "All" becomes the variable's `allValue` verbatim (`.+`, `.*`), or, with no
  allValue, every option value as `(a|b)`;
- `$__interval`/`$interval` (the deprecated alias, when the dashboard has no variable named `interval`): the query
  interval, e.g. `1m`; `$__interval_ms`; `$__rate_interval`: `max(interval + scrape interval, 4 * scrape interval)`
  in seconds (`75s`); `$__range`: the time range in whole seconds (`7200s`), `$__range_s`, `$__range_ms`;
- interval variables (`$window`) and custom variables (`$interval` where the dashboard defines it): their value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ray-2.60" / "grafana" / "generated"
SCRAPE_INTERVAL_MS = 15_000  # the datasource's scrape interval (Grafana's default `timeInterval`)
ALL = None  # a variable set to "All"

_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


@dataclass(frozen=True)
class Variable:
    name: str
    type: str
    multi: bool
    include_all: bool
    all_value: str | None
    options: tuple[str, ...]  # custom variables' values (query variables' are found in the data)
    current: str | None  # interval/custom variables' selected value


@dataclass(frozen=True)
class PanelTarget:
    case_id: str  # `{dashboard uid}-{panel id}-{refId}`
    dashboard: str  # file name
    uid: str
    panel_id: int
    title: str
    ref_id: str
    expr: str  # as written in the dashboard
    instant: bool  # Grafana sends an instant query (the heatmaps over $__range), else a range query


@dataclass
class Dashboard:
    file: str
    uid: str
    title: str
    variables: dict[str, Variable]
    targets: list[PanelTarget] = field(default_factory=list)


@dataclass(frozen=True)
class GrafanaRequest:
    """What Grafana knows when it interpolates: the selected variable values and the panel's time range.

    `values` maps a variable name to a value, a list of values (multi-value selection) or ALL; variables not named
    are ALL. `options` gives the values an include-all variable without allValue expands to (query variables'
    values come from the data, so the caller supplies them)."""

    values: dict[str, str | list[str] | None]
    interval_ms: int
    range_ms: int
    options: dict[str, list[str]] = field(default_factory=dict)


def _walk(panels: list[dict]):
    for p in panels:
        yield p
        yield from _walk(p.get("panels") or [])


def _variable(v: dict) -> Variable:
    query = v.get("query")
    options: tuple[str, ...] = ()
    if v.get("type") == "custom" and isinstance(query, str):
        options = tuple(o.strip() for o in query.split(",") if o.strip())
    elif v.get("options"):
        options = tuple(o["value"] for o in v["options"] if o.get("value") not in (None, "$__all"))
    current = (v.get("current") or {}).get("value")
    if isinstance(current, list):
        current = current[0] if len(current) == 1 else None
    return Variable(
        v["name"],
        v.get("type", ""),
        bool(v.get("multi")),
        bool(v.get("includeAll")),
        v.get("allValue"),
        options,
        None if current == "$__all" else current,
    )


def load_dashboards(folder: Path = DASHBOARDS) -> list[Dashboard]:
    if not list(folder.glob("*.json")):  # at import time of the oracle: an empty list would parametrize nothing
        raise FileNotFoundError(
            f"no dashboards in {folder}: the shared reference (../shared/ beside the repository) is missing"
        )
    out = []
    for path in sorted(folder.glob("*.json")):
        d = json.loads(path.read_text())
        variables = {v["name"]: _variable(v) for v in d.get("templating", {}).get("list", [])}
        dash = Dashboard(path.name, d["uid"], d.get("title", ""), variables)
        for panel in _walk(d.get("panels") or []):
            for t in panel.get("targets") or []:
                if not t.get("expr"):
                    continue
                dash.targets.append(
                    PanelTarget(
                        f"{d['uid']}-{panel['id']}-{t.get('refId', 'A')}",
                        path.name,
                        d["uid"],
                        panel["id"],
                        panel.get("title", ""),
                        t.get("refId", "A"),
                        t["expr"],
                        bool(t.get("instant")) and t.get("range") is False,
                    )
                )
        out.append(dash)
    return out


def panel_targets(folder: Path = DASHBOARDS) -> list[PanelTarget]:
    return [t for d in load_dashboards(folder) for t in d.targets]


# --- Grafana's interpolation --------------------------------------------------------------------------------------


def regular_escape(value: str) -> str:
    """Grafana's prometheusRegularEscape (single-valued variables)."""
    return value.replace("\\", "\\\\").replace("'", "\\\\'").replace('"', '\\"')


def regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: the value as a regex literal inside a PromQL string."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def grafana_duration(ms: int) -> str:
    """Grafana's rangeUtil.secondsToHms: the largest whole unit only (e.g. 60000 -> `1m`, 90000 -> `1m`)."""
    s = ms / 1000
    for unit, size in (("y", 31_536_000), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if int(s // size):
            return f"{int(s // size)}{unit}"
    if int(s):
        return f"{int(s)}s"
    return f"{ms}ms"


def format_variable(var: Variable, value: str | list[str] | None, options: list[str] | None = None) -> str:
    if var.type in ("interval", "custom", "constant", "textbox") and not var.multi and not var.include_all:
        chosen = var.current if value is ALL else value
        return regular_escape(chosen if isinstance(chosen, str) else (chosen or [""])[0])
    if value is ALL:
        if var.all_value is not None:
            return var.all_value  # Grafana inserts allValue unescaped
        value = list(options if options is not None else var.options)
    if not var.multi and not var.include_all:
        return regular_escape(value if isinstance(value, str) else value[0])
    if isinstance(value, str):
        return regex_escape(value)
    escaped = [regex_escape(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def builtins(req: GrafanaRequest) -> dict[str, str]:
    interval_s = req.interval_ms / 1000
    rate_s = max(interval_s + SCRAPE_INTERVAL_MS / 1000, 4 * SCRAPE_INTERVAL_MS / 1000)
    range_s = round(req.range_ms / 1000)
    return {
        "__interval": grafana_duration(req.interval_ms),
        "__interval_ms": str(req.interval_ms),
        "__rate_interval": f"{rate_s:g}s",
        "__rate_interval_ms": str(int(rate_s * 1000)),
        "__range": f"{range_s}s",
        "__range_s": str(range_s),
        "__range_ms": str(req.range_ms),
    }


def interpolate(expr: str, dashboard: Dashboard, req: GrafanaRequest) -> str:
    """The expression Grafana sends for `expr` of `dashboard` under `req`; unknown `$names` are left as they are,
    as Grafana leaves them."""
    macros = builtins(req)

    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        var = dashboard.variables.get(name)
        if var is not None:
            return format_variable(var, req.values.get(name, ALL), req.options.get(name))
        if name in macros:
            return macros[name]
        if name == "interval":  # Grafana's deprecated alias of $__interval
            return macros["__interval"]
        return m.group(0)

    return _VAR.sub(one, expr)


@dataclass(frozen=True)
class Case:
    """One panel target as Grafana sends it under one variable selection (`scope`: `session` or `all`)."""

    id: str
    target: PanelTarget
    scope: str
    expr: str


def cases(selections: dict[str, GrafanaRequest], folder: Path = DASHBOARDS) -> list[Case]:
    out = []
    for dash in load_dashboards(folder):
        for t in dash.targets:
            for scope, req in selections.items():
                out.append(Case(f"{t.case_id}-{scope}", t, scope, interpolate(t.expr, dash, req)))
    return out


__all__ = [
    "ALL",
    "Case",
    "Dashboard",
    "GrafanaRequest",
    "PanelTarget",
    "Variable",
    "cases",
    "format_variable",
    "grafana_duration",
    "interpolate",
    "load_dashboards",
    "panel_targets",
    "regex_escape",
]
