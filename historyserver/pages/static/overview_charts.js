// The session overview's key charts, drawn with the vendored uPlot from the session's Prometheus API.
// The expressions are the Default dashboard's own (Ray 2.60, default_grafana_dashboard.json), variables and all:
// they are interpolated here the way Grafana's Prometheus datasource does, so each chart shows what the same
// panel of Ray's dashboard would show for this session.
(function () {
  "use strict";
  const root = document.getElementById("charts");
  if (!root) return;
  const API = root.dataset.api;
  const START_MS = Number(root.dataset.start);
  const LIVE = root.dataset.live === "true";
  const REFRESH_S = 15; // a running session's charts follow it: queried again up to now, as Ray's panels refresh
  const TARGET_POINTS = 600;
  const HEIGHT = 220;

  const SEL = 'instance=~"$Instance", RayNodeType=~"$RayNodeType", SessionName=~"$SessionName",ray_io_cluster=~"$Cluster"';
  const SEL_NODE = 'instance=~"$Instance",SessionName=~"$SessionName",ray_io_cluster=~"$Cluster"';
  const CHARTS = [
    {
      id: "cpu", metric: "ray_node_cpu_utilization", title: "Node CPU Usage %", unit: "percent",
      targets: [{ expr: `sum(ray_node_cpu_utilization{${SEL}}) by (instance, RayNodeType)`,
                  legend: "CPU Usage: {{instance}} ({{RayNodeType}})" }],
    },
    {
      id: "memory", metric: "ray_node_mem_used_host", title: "Node Memory Usage % (heap + object store)", unit: "percent",
      targets: [
        { expr: `sum(ray_node_mem_used_host{${SEL}}) by (instance, RayNodeType) * 100 / ` +
                `sum(ray_node_mem_total_host{${SEL}}) by (instance, RayNodeType)`,
          legend: "Memory Used (Host): {{instance}} ({{RayNodeType}})" },
        { expr: `sum(ray_node_cgroup_mem_used{${SEL}}) by (instance, RayNodeType) * 100 / ` +
                `sum(ray_node_cgroup_mem_total{${SEL}}) by (instance, RayNodeType)`,
          legend: "Memory Used (Container): {{instance}} ({{RayNodeType}})" },
      ],
    },
    {
      id: "tasks", metric: "ray_tasks", title: "All Tasks by State", unit: "tasks",
      targets: [
        { expr: 'sum(max_over_time(ray_tasks{IsRetry="0",State=~"FINISHED|FAILED",' + SEL_NODE + "}[14d])) by (State) " +
                'or clamp_min(sum(ray_tasks{IsRetry="0",State!~"FINISHED|FAILED",' + SEL_NODE + "}) by (State), 0)",
          legend: "{{State}}" },
        { expr: 'sum(max_over_time(ray_tasks{IsRetry!="0",State=~"FINISHED|FAILED",' + SEL_NODE + "}[14d])) by (State) " +
                'or clamp_min(sum(ray_tasks{IsRetry!="0",State!~"FINISHED|FAILED",' + SEL_NODE + "}) by (State), 0)",
          legend: "{{State}} (retry)" },
      ],
    },
    {
      id: "object-store", metric: "ray_object_store_memory", title: "Object Store Memory Usage", unit: "bytes",
      targets: [
        { expr: `sum(ray_object_store_memory{${SEL_NODE}}) by (instance)`, legend: "{{instance}}" },
        { expr: `sum(ray_resources{Name="object_store_memory",${SEL_NODE}})`, legend: "MAX" },
      ],
    },
  ];

  // Grafana's prometheusSpecialRegexEscape: SessionName is an include-all variable, so its value is regex-escaped
  // (with the backslash itself escaped for the PromQL string).
  function regexEscape(value) {
    return value.replace(/\\/g, "\\\\\\\\").replace(/[$^*{}\[\]'+?.()|]/g, "\\\\$&");
  }
  // "All" for the others: their allValue, or every option as `(a|b)` when the variable has none (RayNodeType).
  const VARIABLES = {
    SessionName: regexEscape(root.dataset.sessionName || ""),
    Instance: ".+",
    Cluster: ".*",
    RayNodeType: "(head|worker)",
  };
  function interpolate(expr) {
    return expr.replace(/\$(\w+)/g, (m, name) => (name in VARIABLES ? VARIABLES[name] : m));
  }

  // -- units ----------------------------------------------------------------------------------------------------
  function trim(v, digits) { return Number(v.toFixed(digits)).toString(); }
  function bytes(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    let x = Math.abs(v);
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (v < 0 ? "-" : "") + trim(x, x < 10 && i ? 2 : 1) + " " + units[i];
  }
  function count(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return trim(v / 1e6, 1) + "M";
    if (a >= 1e3) return trim(v / 1e3, 1) + "k";
    return trim(v, 2);
  }
  const FORMAT = { percent: (v) => trim(v, 1) + "%", bytes, tasks: count };
  // Byte ticks at powers of two, so that the axis reads 2 GiB, 4 GiB rather than 1.86 GiB, 3.73 GiB.
  const BYTE_INCRS = [];
  for (let k = 0; k < 6; k++) for (let m = 1; m < 1024; m *= 2) BYTE_INCRS.push(m * 1024 ** k);

  // UTC, like the rest of the page: times of day for a session within a day, dates beyond.
  function clock(ts, withDate, withSeconds) {
    const iso = new Date(ts * 1000).toISOString(); // 2026-11-25T20:59:21.325Z
    const time = iso.slice(11, withSeconds ? 19 : 16);
    return withDate ? iso.slice(5, 10) + " " + time : time;
  }

  // -- queries --------------------------------------------------------------------------------------------------
  const startS = START_MS / 1000;
  let stepS, endS, npoints; // the time grid: from the session's start to its end, or to now while it runs
  function frame() {
    const endMs = root.dataset.end ? Number(root.dataset.end) : Date.now();
    stepS = Math.max(1, Math.ceil((endMs - START_MS) / 1000 / TARGET_POINTS));
    endS = Math.max(endMs / 1000, startS);
    npoints = Math.floor((endS - startS) / stepS) + 1;
  }
  frame();

  async function queryRange(expr) {
    const body = new URLSearchParams({ query: interpolate(expr), start: String(startS), end: String(endS),
                                       step: stepS + "s" });
    let resp;
    try {
      resp = await fetch(API + "/query_range", { method: "POST", body });
    } catch (e) {
      throw new Error("the history server did not answer (" + e.message + ")");
    }
    let json = null;
    try { json = await resp.json(); } catch (e) { /* not the API's JSON: say so below */ }
    if (!json || json.status !== "success") {
      const why = json && json.error ? (json.errorType ? json.errorType + ": " : "") + json.error
                                     : "HTTP " + resp.status + " " + resp.statusText;
      throw new Error(why);
    }
    return json.data.result;
  }

  function legendOf(format, metric) {
    const text = format.replace(/\{\{\s*(\w+)\s*\}\}/g, (m, name) => metric[name] || "");
    if (text.trim()) return text;
    const labels = Object.keys(metric).filter((k) => k !== "__name__").sort().map((k) => `${k}="${metric[k]}"`);
    return (metric.__name__ || "") + "{" + labels.join(", ") + "}";
  }

  function toNumber(text) {
    const v = Number(text); // "NaN", "+Inf", "-Inf" are not numbers uPlot can draw: leave a gap
    return Number.isFinite(v) ? v : null;
  }

  // One uPlot data table: the query's time grid, one column per series.
  function table(chart, results) {
    const xs = Array.from({ length: npoints }, (_, k) => startS + k * stepS);
    const series = [];
    const columns = [];
    chart.targets.forEach((t, i) => {
      for (const s of results[i]) {
        const ys = new Array(npoints).fill(null);
        for (const [ts, v] of s.values) {
          const k = Math.round((ts - startS) / stepS);
          if (k >= 0 && k < npoints) ys[k] = toNumber(v);
        }
        series.push(legendOf(t.legend, s.metric));
        columns.push(ys);
      }
    });
    return { labels: series, data: [xs, ...columns] };
  }

  // -- drawing --------------------------------------------------------------------------------------------------
  const PALETTE = ["#1f78c1", "#e24d42", "#508642", "#ef843c", "#705da0", "#0a9396", "#cca300", "#ba43a9",
                   "#6d1f62", "#3f6833", "#447ebc", "#c15c17"];
  const STATE_COLORS = { FINISHED: "#3b8f3b", FAILED: "#c0392b", RUNNING: "#e69500", PENDING_NODE_ASSIGNMENT: "#7a7a7a" };

  function colorFor(label, i) {
    const state = label.replace(/ \(retry\)$/, "");
    return STATE_COLORS[state] || PALETTE[i % PALETTE.length];
  }

  function box(chart) {
    const el = document.createElement("section");
    el.className = "chart";
    el.id = "chart-" + chart.id;
    el.dataset.state = "loading";
    // What the chart asks, as written in the dashboard and as sent: for readers of the page source and for tests.
    el.dataset.targets = JSON.stringify(chart.targets.map((t) => [t.expr, t.legend]));
    el.dataset.queries = JSON.stringify(chart.targets.map((t) => interpolate(t.expr)));
    const h = document.createElement("h3");
    h.textContent = chart.title;
    const body = document.createElement("div");
    body.className = "chart-body";
    body.textContent = "Loading\u2026";
    el.append(h, body);
    root.append(el);
    return el;
  }

  function message(el, state, text) {
    el.dataset.state = state;
    const body = el.querySelector(".chart-body");
    body.textContent = "";
    const p = document.createElement("p");
    p.className = "chart-message " + state;
    p.textContent = text;
    body.append(p);
  }

  function draw(el, chart, t) {
    const fmt = FORMAT[chart.unit];
    const body = el.querySelector(".chart-body");
    body.textContent = "";
    const opts = {
      width: body.clientWidth || 600,
      height: HEIGHT,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"), // the page gives times in UTC
      cursor: { sync: { key: "rayhistory-overview" } },
      scales: { y: { range: (u, min, max) => [0, chart.unit === "percent" ? Math.max(100, max || 0)
                                                                          : Math.max((max || 0) * 1.1, 1)] } },
      axes: [
        { values: (u, splits, ai, space, incr) => splits.map((ts) => clock(ts, endS - startS > 86400, incr < 60)) },
        { size: 70, values: (u, splits) => splits.map((v) => (v == null ? "" : fmt(v))),
          incrs: chart.unit === "bytes" ? BYTE_INCRS : undefined },
      ],
      series: [
        { label: "Time (UTC)", value: (u, ts) => (ts == null ? "\u2013" : clock(ts, true, true)) },
        ...t.labels.map((label, i) => ({
          label, stroke: colorFor(label, i), width: 1.5, spanGaps: false,
          dash: /MAX$/.test(label) ? [6, 4] : undefined,
          value: (u, v) => (v == null ? "\u2013" : fmt(v)),
        })),
      ],
    };
    const plot = new uPlot(opts, t.data, body);
    el.dataset.state = "drawn";
    el.dataset.series = String(t.labels.length);
    return plot;
  }

  const plots = new Map(); // chart element -> its uPlot
  async function load(chart, el) {
    try {
      const results = await Promise.all(chart.targets.map((t) => queryRange(t.expr)));
      const t = table(chart, results);
      const plot = plots.get(el);
      if (plot && plot.series.length === t.labels.length + 1 &&
          t.labels.every((label, i) => plot.series[i + 1].label === label)) {
        plot.setData(t.data); // the same series, more points: no redraw from scratch
      } else if (!t.labels.length) {
        if (plot) plot.destroy();
        plots.delete(el);
        message(el, "empty", LIVE
          ? "No " + chart.metric + " series in the live Prometheus for this session yet."
          : "No metrics archived for this session: no " + chart.metric + " series between its start and end.");
      } else {
        if (plot) plot.destroy();
        plots.set(el, draw(el, chart, t));
      }
      el.dataset.end = String(endS); // up to when the chart reads (tests and readers of the page)
    } catch (e) {
      if (plots.has(el)) plots.get(el).destroy();
      plots.delete(el);
      message(el, "error", "Could not load this chart: " + e.message);
    }
  }

  window.addEventListener("resize", () => {
    for (const [el, plot] of plots) plot.setSize({ width: el.querySelector(".chart-body").clientWidth, height: HEIGHT });
  });

  if (!Number.isFinite(START_MS) || START_MS <= 0) {
    for (const chart of CHARTS) message(box(chart), "error", "Could not load this chart: the session's start time is unknown.");
    return;
  }
  const note = document.getElementById("charts-range");
  const shown = CHARTS.map((chart) => [chart, box(chart)]);
  function loadAll() {
    if (note) note.textContent = `; one point every ${stepS} s` + (LIVE ? `, refreshed every ${REFRESH_S} s` : "");
    return Promise.all(shown.map(([chart, el]) => load(chart, el)));
  }
  loadAll();
  if (LIVE) {
    const again = () => { frame(); loadAll().then(() => setTimeout(again, REFRESH_S * 1000)); };
    setTimeout(again, REFRESH_S * 1000); // the next round once this one answered: never two at once
  }
})();
