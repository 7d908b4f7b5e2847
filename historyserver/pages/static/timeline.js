// The job timeline: task attempts over time, one lane per worker grouped under its node, drawn on a canvas.
// No library and no CDN: the page must work for a cluster that is long gone, from an offline network.
// The server answers each visible window at the level of detail it allows (routes: /api/v1/sessions/{id}/timeline):
// per-lane density when many attempts are in view, the attempts themselves with their phases when few are.
// This file fetches those answers, zooms, wires the filters and starts the page; the rest is in timeline_state.js
// (state, geometry, rows), timeline_draw.js, timeline_pointer.js and timeline_task.js, loaded before it.
(function () {
  "use strict";
  const T = window.TimelinePage, S = T.state;
  const { canvas, tooltip, status, session, filters, stats, GUTTER, AXIS, ROW } = T;
  const { plotWidth, x } = T;

  function params(extra) {
    const p = new URLSearchParams(extra);
    if (filters.job) p.set("job_id", filters.job);
    if (filters.function) p.set("function", filters.function);
    if (filters.state) p.set("state", filters.state);
    return "/api/v1/sessions/" + session + "/timeline?" + p.toString();
  }
  function query() {
    const view = S.view;
    return params({ start: String(view.from), end: String(view.to),
      width: String(Math.min(4000, Math.round(plotWidth()))), color_by: S.colorBy });
  }
  function firstUrl() {
    return params({ width: String(Math.round(plotWidth())), color_by: S.colorBy });
  }

  // Fetch the visible window; while it travels, the previous answer is drawn at the new zoom.
  function refresh(first) {
    const mine = ++S.seq;
    clearTimeout(S.pending);
    S.pending = setTimeout(async () => {
      const began = performance.now();
      const url = first ? firstUrl() : query();
      try {
        const r = await fetch(url);
        const text = await r.text();
        if (mine !== S.seq) return;
        const body = JSON.parse(text);
        if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
        stats.requests.push({ ms: performance.now() - began, bytes: text.length, mode: body.mode });
        accept(body, first);
      } catch (e) {
        if (mine === S.seq) status.textContent = "Could not load the timeline: " + e.message;
      }
    }, first ? 0 : 60);
  }
  T.refresh = refresh;

  function accept(body, first) {
    S.data = body;
    if (first) {
      if (body.extent.start == null) { status.textContent = "No task attempts with a start time."; return; }
      S.extent = { start: body.extent.start, end: Math.max(body.extent.end, body.extent.start + 1) };
      S.view = { from: body.start, to: body.end };
      fillFacets();
      if (body.lanes.length > 64) body.lanes.forEach((l) => S.collapsed.add(l.node_id)); // fold a big cluster
    }
    T.layoutRows();
    T.toAttempts();
    T.draw();
    T.drawLegend();
    T.describe();
    canvas.dataset.total = String(body.total);
    canvas.dataset.ready = String(S.seq);
    if (first && stats.firstDrawMs == null) stats.firstDrawMs = performance.now(); // since navigation started
  }

  function fillFacets() {
    const put = (id, values, current) => {
      const sel = document.getElementById(id);
      for (const v of values) {
        const o = document.createElement("option");
        o.value = v; o.textContent = v; if (v === current) o.selected = true;
        sel.append(o);
      }
    };
    put("f-function", S.data.facets.functions, filters.function);
    put("f-state", S.data.facets.states, filters.state);
  }

  function zoomTo(from, to) {
    const min = 0.05; // 50 µs: below this the recorded times (ms) say nothing
    if (to - from < min) { const mid = (from + to) / 2; from = mid - min / 2; to = mid + min / 2; }
    S.view = { from, to };
    tooltip.hidden = true;
    T.draw();
    refresh(false);
  }
  T.zoomTo = zoomTo;

  const refilter = () => { S.seq++; S.collapsed = new Set(); S.data = null; refresh(true); };
  document.getElementById("f-job").addEventListener("change", (e) => { filters.job = e.target.value; refilter(); });
  document.getElementById("f-function").addEventListener("change", (e) => { filters.function = e.target.value; refilter(); });
  document.getElementById("f-state").addEventListener("change", (e) => { filters.state = e.target.value; refilter(); });
  document.getElementById("color-by").addEventListener("change", (e) => { S.colorBy = e.target.value; refresh(false); });
  document.getElementById("search").addEventListener("input", (e) => {
    S.search = e.target.value.trim();
    if (S.data) { T.draw(); T.describe(); }
  });
  document.getElementById("controls").addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("reset").addEventListener("click", () => { if (S.extent) zoomTo(S.extent.start, S.extent.end); });
  window.addEventListener("resize", () => { if (S.data) { T.draw(); refresh(false); } });

  // For tests and benchmarks: where a task's bar is (CSS pixels from the canvas's top left), the view, timings.
  // timeline_path.js draws the critical path through setOverlay and laneY.
  window.__rayhistoryTimeline = {
    locate(taskId) {
      const a = S.attempts.find((t) => t.task_id === taskId);
      if (!a || a.lane < 0) return null;
      const a0 = Math.max(x(a.from), GUTTER), a1 = Math.max(x(a.to), a0 + 1);
      const run = a.start_ms != null ? Math.max(x(a.start_ms), GUTTER) : a0;
      return { x: (Math.max(run, a0) + a1) / 2, y: AXIS + S.laneRow[a.lane] * ROW + ROW / 2, width: a1 - a0,
        plot: plotWidth() };
    },
    view() { return S.view && { ...S.view }; },
    zoomTo,
    // fn draws over the bars; keep ("task_id:attempt" strings), when given, are drawn bright and the rest dimmed.
    setOverlay(fn, keys) { S.overlay = fn; S.keep = fn && keys ? keys : null; T.draw(); },
    x(t) { return x(t); },
    laneY(lane, nodeRank) { return S.data ? T.laneY(lane, nodeRank) : null; },
    state() {
      const data = S.data;
      return data && { mode: data.mode, total: data.total, start: data.start, end: data.end, seq: S.seq,
        drawn: Number(canvas.dataset.tasksDrawn) };
    },
    stats,
  };
  refresh(true);
})();
