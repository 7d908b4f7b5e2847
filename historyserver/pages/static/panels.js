// Panels of a session's archived Ray dashboard, drawn with the vendored uPlot from the session's Prometheus API.
// The server (historyserver/panels.py) sends each panel's queries with Grafana's variables already replaced, its
// unit, min/max, stacking, fill, series overrides, legend and thresholds; this draws them the way Grafana's graph,
// stat, gauge and pie chart panels do, only as far as Ray's dashboards use them.
(function () {
  "use strict";
  const spec = JSON.parse(document.getElementById("spec").textContent);
  const root = document.getElementById("panels");
  const API = root.dataset.api;
  const fmt = window.RayhistoryUnits.format;
  const START_S = spec.startMs / 1000;
  const STEP_S = spec.stepMs / 1000;
  // A running session with a live Prometheus (the server says so): its charts run to "now" and are asked again
  // every `refresh` (Ray's Metrics tab asks 5s; the Overview's cards give none, then every 15 s).
  const LIVE = root.dataset.live === "true";
  const REFRESH_S = durationS(root.dataset.refresh) || 15;
  const MAX_POINTS = 11000; // the query API's limit per series: past it, reload to get a coarser step
  let END_S = spec.endMs / 1000;
  let NPOINTS = Math.floor((END_S - START_S) / STEP_S) + 1;
  function durationS(text) {
    const m = /^(\d+)(s|m|h|d)$/.exec(text || "");
    return m ? Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2]] : 0;
  }
  const TZ = new URLSearchParams(location.search).get("timezone");
  // Grafana's classic palette, which its legacy graph panel (Ray's panels) assigns in series order.
  const PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0",
    "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477", "#B7DBAB", "#F4D598",
    "#70DBED", "#F9BA8F", "#F29191", "#82B5D8", "#E5A8E2", "#AEA2E0", "#629E51", "#E5AC0E", "#64B0C8", "#E0752D"];
  const NAMED = { green: "#73BF69", "super-light-green": "#C8F2C2", "super-light-yellow": "#FFF899", red: "#F2495C",
    yellow: "#FADE2A", orange: "#FF9830", blue: "#5794F2", "dark-green": "#37872D" };
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  // -- the query API, a few requests at a time (the server admits a bounded number of queries) ------------------
  let running = 0;
  const waiting = [];
  function slot() {
    if (running < 4) { running++; return Promise.resolve(); }
    return new Promise((resolve) => waiting.push(resolve));
  }
  function release() {
    const next = waiting.shift();
    if (next) next(); else running--;
  }
  async function ask(path, params, attempt = 0) {
    await slot();
    let resp, json = null;
    try {
      resp = await fetch(API + path, { method: "POST", body: new URLSearchParams(params) });
      try { json = await resp.json(); } catch (e) { /* not the API's JSON: said below */ }
    } catch (e) {
      throw new Error("the history server did not answer (" + e.message + ")");
    } finally {
      release();
    }
    if (resp.status === 503 && attempt < 5) { // busy: wait as told, then ask again
      const wait = Number(resp.headers.get("Retry-After") || 1) * 1000;
      await new Promise((r) => setTimeout(r, wait));
      return ask(path, params, attempt + 1);
    }
    if (!json || json.status !== "success") {
      throw new Error(json && json.error ? (json.errorType ? json.errorType + ": " : "") + json.error
                                         : "HTTP " + resp.status + " " + resp.statusText);
    }
    return json.data;
  }
  const queryRange = (q) => ask("/query_range", { query: q, start: START_S, end: END_S, step: STEP_S + "s" })
    .then((d) => d.result);
  const queryInstant = (q) => ask("/query", { query: q, time: END_S }).then((d) =>
    d.resultType === "vector" ? d.result.map((s) => ({ metric: s.metric, values: [s.value] })) : []);

  // Grafana's legend format: `{{label}}` becomes the label's value, or the label's name where the series lacks it.
  function legendOf(format, metric) {
    if (format) return format.replace(/\{\{\s*(.+?)\s*\}\}/g, (m, name) => (metric[name] ? metric[name] : name));
    const labels = Object.keys(metric).filter((k) => k !== "__name__").map((k) => `${k}="${metric[k]}"`);
    return (metric.__name__ || "") + "{" + labels.join(", ") + "}";
  }
  const num = (text) => { const v = Number(text); return Number.isNaN(v) ? null : v; };

  async function seriesOf(panel) {
    const results = await Promise.all(panel.targets.map((t) => (t.instant ? queryInstant : queryRange)(t.query)));
    const out = [];
    panel.targets.forEach((t, i) => {
      for (const s of results[i]) {
        const ys = new Array(NPOINTS).fill(null);
        for (const [ts, v] of s.values) {
          const k = Math.round((ts - START_S) / STEP_S);
          if (k >= 0 && k < NPOINTS) ys[k] = num(v);
        }
        const last = s.values.length ? num(s.values[s.values.length - 1][1]) : null;
        out.push({ label: legendOf(t.legend, s.metric), metric: s.metric, ys, last, target: t });
      }
    });
    return out;
  }

  // -- series overrides (alias: exact name or /regex/) and legend statistics -------------------------------------
  function overridesFor(panel, label) {
    const o = {};
    for (const ov of panel.overrides) {
      const m = /^\/(.*)\/([gimsuy]*)$/.exec(ov.alias || "");
      if (m ? new RegExp(m[1], m[2]).test(label) : ov.alias === label) Object.assign(o, ov);
    }
    return o;
  }
  function stats(ys) {
    const vs = ys.filter((v) => v != null && Number.isFinite(v));
    if (!vs.length) return { min: null, max: null, avg: null, current: null, total: null };
    const total = vs.reduce((a, b) => a + b, 0);
    return { min: Math.min(...vs), max: Math.max(...vs), avg: total / vs.length, current: vs[vs.length - 1], total };
  }
  function alpha(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
  }

  // -- the graph panel ---------------------------------------------------------------------------------------------
  function drawGraph(el, panel, series) {
    const body = el.querySelector(".panel-body");
    body.textContent = "";
    const plotBox = document.createElement("div");
    plotBox.className = "plot";
    body.append(plotBox);
    const xs = Array.from({ length: NPOINTS }, (_, k) => START_S + k * STEP_S);
    const acc = new Array(NPOINTS).fill(0);
    const cols = [], opts = [], bands = [];
    let prevStacked = null;
    series.forEach((s, i) => {
      const o = overridesFor(panel, s.label);
      s.color = o.color || PALETTE[i % PALETTE.length];
      s.hidden = Boolean(o.hiddenSeries);
      s.stats = stats(s.ys);
      const stacked = panel.stack && o.stack !== false && !s.hidden;
      const col = stacked ? s.ys.map((v, k) => (v == null && acc[k] === 0 ? null : (acc[k] += v || 0))) : s.ys;
      const fill = o.fill != null ? o.fill : panel.fill;
      cols.push(col);
      opts.push({
        label: s.label, stroke: s.color, width: 1, show: !s.hidden,
        fill: fill > 0 ? alpha(s.color, Math.min(1, fill / 10)) : undefined,
        dash: o.dashes ? [10, 10] : undefined,
        spanGaps: panel.nullPointMode === "connected",
        value: (u, v, si, idx) => fmt(panel.unit, idx == null ? null : s.ys[idx], panel.decimals),
      });
      if (stacked && fill > 0 && prevStacked != null) bands.push({ series: [i + 1, prevStacked + 1] });
      if (stacked) prevStacked = i;
    });
    const all = cols.flat().filter((v) => v != null && Number.isFinite(v));
    const lo = panel.min != null ? panel.min : Math.min(0, ...all);
    let hi = panel.max != null ? panel.max : Math.max(...all, lo);
    if (hi <= lo) hi = lo + 1;
    const axisColor = css("--muted"), gridColor = css("--grid");
    const plot = new uPlot({
      width: 100, height: 100,
      tzDate: TZ ? (ts) => uPlot.tzDate(new Date(ts * 1e3), TZ) : undefined,
      legend: { show: false },
      cursor: { points: { size: 5 } },
      scales: { y: { range: () => [lo, panel.max != null ? hi : hi + (hi - lo) * 0.05] } },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor } },
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor }, size: axisSize,
          values: (u, splits) => splits.map((v) => fmt(panel.unit, v, panel.decimals)),
          incrs: window.RayhistoryUnits.byteIncrs(panel.unit) },
      ],
      series: [{}, ...opts],
      bands,
      hooks: { setCursor: [(u) => tooltip(u, el, panel, series)] },
    }, [xs, ...cols], plotBox);
    if (panel.legend.show) legendTable(el, panel, series, plot);
    fit(el, plot);
  }

  // The y axis as wide as its longest label (uPlot's fixed default crops "1.5 GiB").
  function axisSize(u, values) {
    const longest = Math.max(0, ...(values || []).map((v) => String(v).length));
    return Math.max(40, Math.ceil(longest * 6.6) + 18);
  }

  // A Grafana-style table legend (name, then the panel's columns), sorted as the panel says; a click shows or hides.
  function legendTable(el, panel, series, plot) {
    const shown = series.map((s, i) => [s, i]).filter(([s]) => !(panel.legend.hideZero && s.stats.max === 0 &&
      s.stats.min === 0) && !(panel.legend.hideEmpty && s.stats.current == null));
    const key = panel.legend.sort;
    if (key && panel.legend.columns.includes(key)) {
      shown.sort(([a], [b]) => ((a.stats[key] ?? -Infinity) - (b.stats[key] ?? -Infinity)) *
                                (panel.legend.sortDesc ? -1 : 1));
    }
    const table = document.createElement("table");
    table.className = "legend";
    const head = table.createTHead().insertRow();
    for (const c of ["", ...panel.legend.columns]) head.insertCell().textContent = c;
    const tbody = table.createTBody();
    for (const [s, i] of shown) {
      const tr = tbody.insertRow();
      tr.className = s.hidden ? "off" : "";
      const name = tr.insertCell();
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      name.append(swatch, document.createTextNode(s.label));
      for (const c of panel.legend.columns) tr.insertCell().textContent = fmt(panel.unit, s.stats[c], panel.decimals);
      tr.addEventListener("click", () => {
        s.hidden = !s.hidden;
        tr.className = s.hidden ? "off" : "";
        plot.setSeries(i + 1, { show: !s.hidden });
      });
    }
    const box = document.createElement("div");
    box.className = "legend-box";
    box.append(table);
    el.querySelector(".panel-body").append(box);
  }

  function tooltip(u, el, panel, series) {
    let tip = el.querySelector(".tip");
    const idx = u.cursor.idx;
    if (idx == null) { if (tip) tip.hidden = true; return; }
    if (!tip) { tip = document.createElement("div"); tip.className = "tip"; el.append(tip); }
    const rows = series.filter((s) => !s.hidden && s.ys[idx] != null)
      .map((s) => `<div><i style="background:${s.color}"></i>${escapeHtml(s.label)}: <b>${
        escapeHtml(fmt(panel.unit, s.ys[idx], panel.decimals))}</b></div>`);
    const when = new Date(u.data[0][idx] * 1000);
    tip.innerHTML = `<div class="when">${escapeHtml(TZ ? when.toLocaleString([], { timeZone: TZ })
                                                         : when.toLocaleString())}</div>` + rows.join("");
    tip.hidden = false;
  }
  const escapeHtml = (t) => String(t).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                                     '"': "&quot;" })[c]);

  // Histogram panels (x axis by series, instant `heatmap` queries): one bar per bucket, Grafana's way of turning
  // cumulative `le` buckets into per-bucket counts.
  function drawBuckets(el, panel, series) {
    const body = el.querySelector(".panel-body");
    body.textContent = "";
    const plotBox = document.createElement("div");
    plotBox.className = "plot";
    body.append(plotBox);
    const sorted = series.map((s) => ({ s, le: Number(s.metric.le) })).sort((a, b) => a.le - b.le);
    let prev = 0;
    const labels = [], ys = [];
    for (const { s } of sorted) {
      const v = s.last ?? 0;
      labels.push(s.label);
      ys.push(Math.max(0, v - prev));
      prev = v;
    }
    const color = PALETTE[0];
    const plot = new uPlot({
      width: 100, height: 100, legend: { show: false }, cursor: { show: false },
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: (u, a, b) => [0, (b || 1) * 1.05] } },
      axes: [{ stroke: css("--muted"), grid: { show: false }, splits: () => labels.map((_, i) => i),
               values: (u, splits) => splits.map((i) => labels[i] ?? "") },
             { stroke: css("--muted"), grid: { stroke: css("--grid") }, size: axisSize,
               values: (u, splits) => splits.map((v) => fmt(panel.unit, v, panel.decimals)) }],
      series: [{}, { label: panel.title, stroke: color, fill: alpha(color, 0.8),
                     paths: uPlot.paths.bars({ size: [0.8, 60] }) }],
    }, [labels.map((_, i) => i), ys], plotBox);
    fit(el, plot);
  }

  function fit(el, plot) {
    const body = el.querySelector(".panel-body");
    if (el.plot) el.plot.destroy(); // a live panel drawn again: let the previous chart and its observer go
    if (el.observer) el.observer.disconnect();
    el.plot = plot;
    const resize = () => {
      const legend = body.querySelector(".legend-box");
      const h = body.clientHeight - (legend ? Math.min(legend.scrollHeight, body.clientHeight * 0.45) : 0);
      plot.setSize({ width: Math.max(body.clientWidth, 100), height: Math.max(h - 4, 60) });
    };
    resize();
    el.observer = new ResizeObserver(resize);
    el.observer.observe(body);
  }

  // -- stat, gauge, pie chart: one reduced value per series (Ray's use `lastNotNull`) -----------------------------
  function reduce(panel, s) {
    const st = stats(s.ys);
    const by = { lastNotNull: st.current, last: s.ys[s.ys.length - 1], mean: st.avg, max: st.max, min: st.min,
                 sum: st.total };
    return s.target.instant ? s.last : by[panel.reduce] ?? st.current;
  }
  function thresholdColor(panel, v, lo, hi) {
    const t = panel.thresholds;
    if (!t || !t.steps || !t.steps.length) return css("--fg");
    const x = t.mode === "percentage" ? ((v - lo) / ((hi - lo) || 1)) * 100 : v;
    let color = t.steps[0].color;
    for (const step of t.steps) if (step.value == null || x >= step.value) color = step.color;
    return NAMED[color] || color;
  }
  function drawValues(el, panel, series) {
    const body = el.querySelector(".panel-body");
    body.textContent = "";
    const values = series.map((s, i) => ({ s, i, v: reduce(panel, s) })).filter((x) => x.v != null);
    const lo = panel.min != null ? panel.min : Math.min(0, ...values.map((x) => x.v));
    const hi = panel.max != null ? panel.max : Math.max(...values.map((x) => x.v), lo + 1);
    const grid = document.createElement("div");
    grid.className = "values " + panel.type;
    if (panel.type === "piechart") return drawPie(body, panel, values);
    for (const { s, v } of values) {
      const cell = document.createElement("div");
      cell.className = "value";
      const color = thresholdColor(panel, v, lo, hi);
      let html = `<div class="name">${escapeHtml(s.label)}</div>`;
      if (panel.type === "gauge" || panel.type === "bargauge") {
        const f = Math.max(0, Math.min(1, (v - lo) / ((hi - lo) || 1)));
        html += panel.type === "gauge"
          ? `<svg viewBox="0 0 100 60"><path d="M10 55 A40 40 0 0 1 90 55" class="track"/>` +
            `<path d="M10 55 A40 40 0 0 1 90 55" stroke="${PALETTE[5]}" pathLength="1" stroke-dasharray="${f} 1"/></svg>`
          : `<div class="bar"><span style="width:${f * 100}%;background:${PALETTE[5]}"></span></div>`;
      }
      html += `<div class="big" style="color:${color}">${escapeHtml(fmt(panel.unit, v, panel.decimals))}</div>`;
      cell.innerHTML = html;
      grid.append(cell);
    }
    body.append(grid);
  }
  function drawPie(body, panel, values) {
    const total = values.reduce((a, x) => a + Math.max(0, x.v), 0) || 1;
    let angle = -Math.PI / 2;
    const parts = values.map(({ s, v, i }) => {
      const a0 = angle, a1 = (angle += (Math.max(0, v) / total) * 2 * Math.PI);
      const large = a1 - a0 > Math.PI ? 1 : 0;
      const p = (a) => `${50 + 45 * Math.cos(a)} ${50 + 45 * Math.sin(a)}`;
      const d = values.length === 1 ? "M50 5 A45 45 0 1 1 49.99 5 Z" : `M50 50 L${p(a0)} A45 45 0 ${large} 1 ${p(a1)} Z`;
      const color = PALETTE[i % PALETTE.length];
      return [`<path d="${d}" fill="${color}"/>`, `<tr><td><i style="background:${color}"></i>${escapeHtml(s.label)}` +
        `</td><td>${Math.round((v / total) * 100)}%</td><td>${escapeHtml(fmt(panel.unit, v, panel.decimals))}</td></tr>`];
    });
    body.innerHTML = `<div class="pie"><svg viewBox="0 0 100 100">${parts.map((x) => x[0]).join("")}</svg>` +
      `<table class="legend">${parts.map((x) => x[1]).join("")}</table></div>`;
  }

  // -- panels and the dashboard grid -------------------------------------------------------------------------------
  function box(panel, parent) {
    const el = document.createElement("section");
    el.className = "panel";
    el.dataset.id = panel.id;
    el.dataset.type = panel.type;
    el.dataset.state = "waiting";
    el.dataset.queries = JSON.stringify(panel.targets.map((t) => t.query));
    const h = document.createElement("h2");
    h.textContent = panel.title;
    if (LIVE) {
      const badge = document.createElement("span");
      badge.className = "live-badge";
      badge.textContent = "live";
      badge.title = "read from the cluster's live Prometheus, refreshed as it runs";
      h.append(badge);
    }
    if (panel.description) h.title = panel.description;
    const body = document.createElement("div");
    body.className = "panel-body";
    el.append(h, body);
    parent.append(el);
    return el;
  }
  function message(el, state, text) {
    el.dataset.state = state;
    const body = el.querySelector(".panel-body");
    body.textContent = "";
    const p = document.createElement("p");
    p.className = "message " + state;
    p.textContent = text;
    body.append(p);
  }
  async function load(el, panel, again = false) {
    if (el.dataset.state !== "waiting" && !again) return;
    el.dataset.state = "loading";
    if (!panel.supported) return message(el, "unsupported", `This ${panel.type} panel is not drawn here.`);
    if (!panel.targets.length) return message(el, "empty", "No queries");
    try {
      const series = await seriesOf(panel);
      el.dataset.series = String(series.filter((s) => s.ys.some((v) => v != null) || s.last != null).length);
      if (el.dataset.series === "0") return message(el, "empty", "No data");
      if (panel.type === "graph" || panel.type === "timeseries") {
        (panel.xMode === "series" ? drawBuckets : drawGraph)(el, panel, series);
      } else {
        drawValues(el, panel, series);
      }
      el.dataset.state = "drawn";
    } catch (e) {
      message(el, "error", "Could not load this panel: " + e.message);
    }
  }

  function placed(panel, parent, top) {
    const el = box(panel, parent);
    const g = panel.gridPos;
    el.style.gridColumn = `${g.x + 1} / span ${g.w}`;
    el.style.gridRow = `${g.y - top + 1} / span ${g.h}`;
    return el;
  }

  const shown = []; // [element, panel] of every panel on the page, for the live refresh
  if (LIVE) setInterval(refresh, REFRESH_S * 1000);
  // Ask every panel already loaded again, up to now (panels of closed rows wait until opened, as before).
  function refresh() {
    if (shown.some(([el]) => el.dataset.state === "loading")) return; // the last round is still answering
    END_S = Math.ceil(Date.now() / 1000 / STEP_S) * STEP_S;
    NPOINTS = Math.floor((END_S - START_S) / STEP_S) + 1;
    if (NPOINTS > MAX_POINTS) { location.reload(); return; } // the server picks a coarser step for the longer life
    for (const [el, panel] of shown) if (el.dataset.state !== "waiting") load(el, panel, true);
  }

  if (spec.panel) {
    const el = box(spec.panel, root);
    shown.push([el, spec.panel]);
    load(el, spec.panel);
    return;
  }
  for (const row of spec.rows) {
    const section = document.createElement("section");
    section.className = "row";
    const grid = document.createElement("div");
    grid.className = "grid";
    const top = Math.min(...row.panels.map((p) => p.gridPos.y), Infinity);
    const els = row.panels.map((p) => [placed(p, grid, Number.isFinite(top) ? top : 0), p]);
    shown.push(...els);
    const show = () => { grid.hidden = false; for (const [el, p] of els) load(el, p); };
    if (row.title) {
      const h = document.createElement("button");
      h.className = "row-title";
      h.textContent = row.title + (row.collapsed ? ` (${row.panels.length} panels)` : "");
      h.setAttribute("aria-expanded", String(!row.collapsed));
      h.addEventListener("click", () => {
        const open = grid.hidden;
        if (open) show(); else grid.hidden = true;
        h.setAttribute("aria-expanded", String(open));
      });
      section.append(h);
    }
    section.append(grid);
    root.append(section);
    if (row.collapsed) grid.hidden = true; else show();
  }
})();
