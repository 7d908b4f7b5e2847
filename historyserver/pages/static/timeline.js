// The job timeline: task attempts over time, one lane per worker grouped under its node, drawn on a canvas.
// No library and no CDN: the page must work for a cluster that is long gone, from an offline network.
// The server answers each visible window at the level of detail it allows (routes: /api/v1/sessions/{id}/timeline):
// per-lane density when many attempts are in view, the attempts themselves with their phases when few are.
(function () {
  "use strict";
  const A = window.TimelineAxis;
  const canvas = document.getElementById("timeline");
  const ctx = canvas.getContext("2d");
  const tooltip = document.getElementById("tooltip");
  const status = document.getElementById("status");
  const legend = document.getElementById("legend");
  const session = canvas.dataset.session;
  const ROW = 18, GUTTER = 190, AXIS = 40, RIGHT = 12;
  const STATE_COLORS = { FINISHED: "#3b8f3b", FAILED: "#c0392b", RUNNING: "#e69500", UNFINISHED: "#e69500" };
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#2f9e9e", "#8cd17d", "#d37295"];
  // Waiting phases: thinner than running and in their own colours, so scheduling delay reads beside run time.
  const PHASE_COLORS = ["#8e9aaf", "#d4a017", "#6c8ebf"];
  const OTHER = "#9a9a9a";

  let data = null;          // the last answer
  let view = null;          // the visible window {from, to} (epoch ms)
  let extent = null;        // the filtered attempts' whole range
  let rows = [], laneRow = [], collapsed = new Set(), attempts = [], drag = null, pending = null, seq = 0;
  const stats = { draws: 0, lastDrawMs: 0, maxDrawMs: 0, requests: [] };
  const filters = { job: canvas.dataset.job || "", function: "", state: "" };
  let colorBy = "state", search = "";
  let overlay = null, keep = null, laneIndex = new Map();       // drawn over the bars, whatever the mode (timeline_path.js: the critical path)

  function css(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }
  function plotWidth() { return Math.max(50, canvas.clientWidth - GUTTER - RIGHT); }
  function x(t) { return GUTTER + ((t - view.from) / (view.to - view.from)) * plotWidth(); }
  function tAt(px) { return view.from + ((px - GUTTER) / plotWidth()) * (view.to - view.from); }

  function keyColor(key) {
    if (key == null) return OTHER;
    if (colorBy === "state") return STATE_COLORS[key] || OTHER;
    const list = colorBy === "job" ? data.facets.jobs : data.facets.functions;
    const i = list.indexOf(key);
    return i < 0 ? OTHER : PALETTE[i % PALETTE.length];
  }
  function attemptKey(a) {
    if (colorBy === "state") return a.unfinished ? "UNFINISHED" : a.state;
    return colorBy === "job" ? a.job_id : a.function;
  }
  function matches(a) {
    if (!search) return true;
    const q = search.toLowerCase();
    return [a.name, a.function, a.task_id].some((v) => v && v.toLowerCase().includes(q));
  }

  // Rows: each node, then (unless folded) its workers; laneRow maps a lane of the answer to its row.
  function layoutRows() {
    rows = []; laneRow = [];
    laneIndex = new Map(data.lanes.map((l, i) => [l.id, i]));
    const byNode = new Map();
    data.lanes.forEach((lane, i) => {
      if (!byNode.has(lane.node_id)) byNode.set(lane.node_id, []);
      byNode.get(lane.node_id).push(i);
    });
    for (const [node, lanes] of byNode) {
      const first = data.lanes[lanes[0]];
      const label = node ? (first.node_ip || node.slice(0, 8)) : "never placed on a node";
      const perWorker = data.rows === "worker" && node;
      const folded = !perWorker || collapsed.has(node);
      const nodeRow = rows.length;
      rows.push({ kind: "node", node, label, lanes, folded, canFold: perWorker });
      if (folded) { lanes.forEach((i) => { laneRow[i] = nodeRow; }); continue; }
      for (const i of lanes) {
        const l = data.lanes[i];
        laneRow[i] = rows.length;
        rows.push({ kind: "lane", node, label: l.worker_id ? "pid " + (l.pid ?? "?") + " · " + l.worker_id.slice(0, 6)
          : "no worker", lanes: [i] });
      }
    }
  }

  function toAttempts() {
    attempts = [];
    if (data.mode !== "attempts") return;
    const c = Object.fromEntries(data.columns.map((name, i) => [name, i]));
    for (const r of data.attempts) {
      const a = {};
      for (const name of data.columns) a[name] = r[c[name]];
      a.from = a.creation_ms ?? a.start_ms;
      a.to = Math.max(a.end_ms ?? a.from, a.from);
      attempts.push(a);
    }
  }

  // Phases: each from its time to the next present one (the last, running, to the end).
  function phases(a) {
    const stamps = [a.creation_ms, a.pending_node_ms, a.submitted_ms, a.start_ms];
    const out = [];
    for (let i = 0; i < stamps.length; i++) {
      if (stamps[i] == null) continue;
      let next = a.to;
      for (let j = i + 1; j < stamps.length; j++) if (stamps[j] != null) { next = stamps[j]; break; }
      out.push({ phase: i, from: stamps[i], to: Math.max(next, stamps[i]) });
    }
    return out;
  }

  function size() {
    const width = canvas.clientWidth;
    const height = AXIS + rows.length * ROW + 6;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.height = height + "px";
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { width, height };
  }

  function drawAxis(width) {
    const fg = css("--fg", "#222"), muted = css("--muted", "#666");
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "alphabetic";
    const pw = plotWidth();
    const wall = A.ticks(view.from, view.to, pw, 95, 0);
    const rel = A.ticks(view.from, view.to, pw, 95, extent.start);
    const date = view.to - view.from >= A.DAY || A.date(view.from) !== A.date(view.to);
    ctx.fillStyle = muted;
    ctx.fillText("UTC " + A.date(view.from), 4, 14);
    ctx.fillText("since first task", 4, 31);
    const labels = (set, y, text) => {
      let lastEnd = GUTTER - 4;
      for (const t of set.times) {
        const px = x(t);
        ctx.fillStyle = css("--grid", "#ddd");
        ctx.fillRect(px, y + 3, 1, 4);
        let s = text(t, set.step);
        let w = ctx.measureText(s).width;
        let at = px + 2;
        if (at + w > width - 2) at = width - 2 - w; // the last label is pulled in, never cut off
        if (at < lastEnd + 6) continue;
        ctx.fillStyle = fg;
        ctx.fillText(s, at, y);
        lastEnd = at + w;
      }
    };
    labels(wall, 14, (t, step) => (date && step < A.DAY ? A.date(t).slice(5) + " " : "") + A.clock(t, step));
    labels(rel, 31, (t, step) => A.relative(t - extent.start, step));
    ctx.fillStyle = css("--grid", "#ddd");
    for (const t of wall.times) ctx.fillRect(x(t), AXIS, 1, rows.length * ROW);
  }

  function drawRows(width) {
    const band = css("--band", "#f3f3f3"), fg = css("--fg", "#222"), muted = css("--muted", "#666");
    rows.forEach((r, i) => {
      const y = AXIS + i * ROW;
      if (r.kind === "node") { ctx.fillStyle = css("--node-band", "#e4e8ee"); ctx.fillRect(0, y, width, ROW); }
      else if (i % 2) { ctx.fillStyle = band; ctx.fillRect(0, y, width, ROW); }
      ctx.fillStyle = r.kind === "node" ? fg : muted;
      ctx.font = (r.kind === "node" ? "600 " : "") + "11px system-ui, sans-serif";
      const marker = r.kind === "node" && r.canFold ? (r.folded ? "▸ " : "▾ ") : r.kind === "lane" ? "   " : "";
      const extra = r.kind === "node" && r.canFold ? " (" + r.lanes.length + " workers)" : "";
      ctx.fillText(marker + r.label + extra, 4, y + 13, GUTTER - 8);
    });
  }

  function drawDensity() {
    const d = data.density, n = d.buckets;
    const bucketMs = (data.end - data.start) / n;
    // counts[row][bucket] per key, summed over the lanes folded into a row.
    const perRow = new Map();
    for (let i = 0; i < d.count.length; i++) {
      const lane = d.lane[i], key = d.key[i];
      const stop = d.encoding === "cells" ? d.bucket[i] + 1
        : i + 1 < d.count.length && d.lane[i + 1] === lane && d.key[i + 1] === key ? d.bucket[i + 1] : n;
      if (!d.count[i] || lane < 0) continue;
      const row = laneRow[lane];
      if (!perRow.has(row)) perRow.set(row, new Map());
      const m = perRow.get(row);
      if (!m.has(key)) m.set(key, new Float64Array(n));
      const arr = m.get(key);
      for (let b = d.bucket[i]; b < stop; b++) arr[b] += d.count[i];
    }
    let max = 1;
    for (const m of perRow.values()) {
      const sum = new Float64Array(n);
      for (const arr of m.values()) for (let b = 0; b < n; b++) sum[b] += arr[b];
      for (let b = 0; b < n; b++) if (sum[b] > max) max = sum[b];
    }
    let drawn = 0;
    for (const [row, m] of perRow) {
      const base = AXIS + row * ROW + ROW - 2;
      const stack = new Float64Array(n);
      for (const [key, arr] of m) {
        ctx.fillStyle = keyColor(d.keys[key]);
        for (let b = 0; b < n; b++) {
          if (!arr[b]) continue;
          const a = x(data.start + b * bucketMs), e = x(data.start + (b + 1) * bucketMs);
          if (e < GUTTER || a > canvas.clientWidth) continue;
          // Square root: a lone task stays visible beside the busiest bucket.
          const h0 = Math.sqrt(stack[b] / max) * (ROW - 4), h1 = Math.sqrt((stack[b] + arr[b]) / max) * (ROW - 4);
          ctx.fillRect(Math.max(a, GUTTER), base - h1, Math.max(1, e - Math.max(a, GUTTER)), Math.max(1, h1 - h0));
          stack[b] += arr[b];
          drawn++;
        }
      }
    }
    canvas.dataset.cellsDrawn = String(drawn);
    canvas.dataset.tasksDrawn = "0";
  }

  function drawAttempts(width) {
    let drawn = 0;
    const searching = !!search;
    const hl = css("--highlight", "#1e6fff"), onBar = "#fff";
    ctx.font = "10px system-ui, sans-serif";
    for (const a of attempts) {
      if (a.to < view.from || a.from > view.to || a.lane < 0) continue;
      const row = laneRow[a.lane], y = AXIS + row * ROW + 2, h = ROW - 4;
      const hit = matches(a);
      const dim = (searching && !hit) || (keep && !keep.has(a.task_id + ":" + a.attempt));
      ctx.globalAlpha = dim ? 0.25 : 1;
      const color = keyColor(attemptKey(a));
      for (const p of phases(a)) {
        const px0 = Math.max(x(p.from), GUTTER), px1 = Math.min(Math.max(x(p.to), px0 + 1), width);
        if (px1 < GUTTER) continue;
        if (p.phase === 3) { ctx.fillStyle = color; ctx.fillRect(px0, y, px1 - px0, h); }
        else { ctx.fillStyle = PHASE_COLORS[p.phase]; ctx.fillRect(px0, y + h * 0.35, px1 - px0, h * 0.3); }
      }
      if (a.start_ms == null) { // never ran: its whole life in its state colour, thin
        ctx.fillStyle = color;
        ctx.fillRect(Math.max(x(a.from), GUTTER), y + h * 0.35, Math.max(1, x(a.to) - x(a.from)), h * 0.3);
      }
      const a0 = Math.max(x(a.from), GUTTER), a1 = Math.min(x(a.to), width);
      if (searching && hit) { ctx.strokeStyle = hl; ctx.lineWidth = 2; ctx.strokeRect(a0 - 1, y - 1, Math.max(2, a1 - a0) + 2, h + 2); }
      const run = a.start_ms != null ? Math.max(x(a.start_ms), GUTTER) : a0;
      const name = a.name || a.function || "";
      if (name && a1 - run > 30) {
        const w = ctx.measureText(name).width;
        if (w + 6 <= a1 - run) { ctx.fillStyle = onBar; ctx.fillText(name, run + 3, y + h - 3); }
      }
      drawn++;
    }
    ctx.globalAlpha = 1;
    canvas.dataset.tasksDrawn = String(drawn);
    canvas.dataset.cellsDrawn = "0";
  }

  function draw() {
    if (!data) return;
    const began = performance.now();
    const { width, height } = size();
    ctx.fillStyle = css("--bg", "#fff");
    ctx.fillRect(0, 0, width, height);
    drawRows(width);
    drawAxis(width);
    ctx.save();
    ctx.beginPath(); ctx.rect(GUTTER, AXIS, width - GUTTER, height - AXIS); ctx.clip();
    if (data.mode === "density") drawDensity(); else drawAttempts(width);
    if (overlay) overlay({ ctx, x, width, laneY, ROW, view });
    ctx.restore();
    const took = performance.now() - began;
    stats.draws++; stats.lastDrawMs = took; stats.maxDrawMs = Math.max(stats.maxDrawMs, took);
    canvas.dataset.mode = data.mode;
  }

  function drawLegend() {
    const items = [];
    const keys = data.mode === "density" ? data.density.keys
      : [...new Set(attempts.map(attemptKey))].sort();
    for (const k of keys) items.push([keyColor(k), k || "(none)", "bar"]);
    if (data.mode === "attempts") data.phases.slice(0, 3).forEach((p, i) => items.push([PHASE_COLORS[i], p, "thin"]));
    legend.replaceChildren(...items.map(([color, label, shape]) => {
      const span = document.createElement("span");
      span.className = "legend-item";
      const sw = document.createElement("i");
      sw.className = "swatch " + shape;
      sw.style.background = color;
      span.append(sw, document.createTextNode(label));
      return span;
    }));
    const note = document.createElement("span");
    note.className = "legend-note";
    note.textContent = data.mode === "density"
      ? "height: attempts per pixel column (zoom in for single tasks)"
      : "thick: running, thin: waiting (" + colorBy + " colours the running part)";
    legend.append(note);
  }

  function describe() {
    const n = data.total.toLocaleString();
    let s = n + " task attempts in view (" + A.duration(view.to - view.from) + ") on " + data.lanes.length +
      (data.rows === "worker" ? " workers" : " nodes");
    if (data.mode === "density") s += "; showing their density: zoom in below " +
      data.limits.attempts.toLocaleString() + " attempts to see each one";
    if (search && data.mode === "attempts") s += "; " + attempts.filter(matches).length + " match “" + search + "”";
    status.textContent = s + ".";
  }

  function query() {
    const p = new URLSearchParams({ start: String(view.from), end: String(view.to),
      width: String(Math.min(4000, Math.round(plotWidth()))), color_by: colorBy });
    if (filters.job) p.set("job_id", filters.job);
    if (filters.function) p.set("function", filters.function);
    if (filters.state) p.set("state", filters.state);
    return "/api/v1/sessions/" + session + "/timeline?" + p.toString();
  }

  // Fetch the visible window; while it travels, the previous answer is drawn at the new zoom.
  function refresh(first) {
    const mine = ++seq;
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const began = performance.now();
      const url = first ? firstUrl() : query();
      try {
        const r = await fetch(url);
        const text = await r.text();
        if (mine !== seq) return;
        const body = JSON.parse(text);
        if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
        stats.requests.push({ ms: performance.now() - began, bytes: text.length, mode: body.mode });
        accept(body, first);
      } catch (e) {
        if (mine === seq) status.textContent = "Could not load the timeline: " + e.message;
      }
    }, first ? 0 : 60);
  }
  function firstUrl() {
    const p = new URLSearchParams({ width: String(Math.round(plotWidth())), color_by: colorBy });
    if (filters.job) p.set("job_id", filters.job);
    if (filters.function) p.set("function", filters.function);
    if (filters.state) p.set("state", filters.state);
    return "/api/v1/sessions/" + session + "/timeline?" + p.toString();
  }

  function accept(body, first) {
    data = body;
    if (first) {
      if (body.extent.start == null) { status.textContent = "No task attempts with a start time."; return; }
      extent = { start: body.extent.start, end: Math.max(body.extent.end, body.extent.start + 1) };
      view = { from: body.start, to: body.end };
      fillFacets();
      if (body.lanes.length > 64) body.lanes.forEach((l) => collapsed.add(l.node_id)); // fold a big cluster
    }
    layoutRows();
    toAttempts();
    draw();
    drawLegend();
    describe();
    canvas.dataset.total = String(body.total);
    canvas.dataset.ready = String(seq);
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
    put("f-function", data.facets.functions, filters.function);
    put("f-state", data.facets.states, filters.state);
  }

  // The top of the row a lane of the table is drawn in (steps carry their lane and node rank), or null when the
  // filters leave that lane out.
  function laneY(lane, nodeRank) {
    const id = data.rows === "node" ? nodeRank : lane;
    const i = laneIndex.get(id);
    return i == null || laneRow[i] == null ? null : AXIS + laneRow[i] * ROW;
  }

  function rowAt(py) { const r = Math.floor((py - AXIS) / ROW); return r >= 0 && r < rows.length ? r : -1; }

  function attemptAt(px, py) {
    const row = rowAt(py);
    if (row < 0 || data.mode !== "attempts") return null;
    // Waiting phases of a queued attempt overlap the attempts running on its worker before it: a running part
    // under the pointer wins over a waiting one.
    let best = null, bestRank = -1;
    for (const a of attempts) {
      if (laneRow[a.lane] !== row) continue;
      const a0 = x(a.from), a1 = Math.max(x(a.to), a0 + 3);
      if (px < a0 - 2 || px > a1 + 2) continue;
      const r0 = a.start_ms != null ? x(a.start_ms) : a0;
      const rank = px >= r0 - 2 ? 1 : 0;
      if (rank > bestRank || (rank === bestRank && a.from >= best.from)) { best = a; bestRank = rank; }
    }
    return best;
  }

  function densityAt(px, py) {
    const row = rowAt(py);
    if (row < 0 || data.mode !== "density" || px < GUTTER) return null;
    const d = data.density, n = d.buckets;
    const b = Math.floor(((tAt(px) - data.start) / (data.end - data.start)) * n);
    if (b < 0 || b >= n) return null;
    const byKey = {};
    for (let i = 0; i < d.count.length; i++) {
      if (d.lane[i] < 0 || laneRow[d.lane[i]] !== row || d.bucket[i] > b) continue;
      const next = d.encoding === "cells" ? d.bucket[i] + 1
        : i + 1 < d.count.length && d.lane[i + 1] === d.lane[i] && d.key[i + 1] === d.key[i] ? d.bucket[i + 1] : n;
      if (b < next && d.count[i]) byKey[d.keys[d.key[i]]] = (byKey[d.keys[d.key[i]]] || 0) + d.count[i];
    }
    const bucketMs = (data.end - data.start) / n;
    return { row, from: data.start + b * bucketMs, to: data.start + (b + 1) * bucketMs, byKey };
  }

  function tooltipText(a) {
    const lane = data.lanes[a.lane] || {};
    const p = phases(a).map((ph) => data.phases[ph.phase] + ": " + A.duration(ph.to - ph.from));
    return [
      a.name + (a.name !== a.function && a.function ? "  (" + a.function + ")" : ""),
      "state: " + a.state + (a.unfinished ? " (unfinished: the cluster ended first)" : "") +
        (a.error_type ? " · error: " + a.error_type : ""),
      "task " + a.task_id + " · attempt " + a.attempt + " · job " + a.job_id,
      "node " + (lane.node_ip || (lane.node_id || "").slice(0, 12) || "-") + " · worker " +
        ((lane.worker_id || "").slice(0, 12) || "-") + " · pid " + (a.pid ?? "-"),
      "start " + A.full(a.start_ms ?? a.from) + " · end " + A.full(a.end_ms),
      "duration " + A.duration(a.to - a.from) + (a.start_ms != null ? " (running " + A.duration(a.to - a.start_ms) + ")" : ""),
      ...p,
    ].join("\n");
  }

  function showTip(ev, text) {
    const rect = canvas.getBoundingClientRect();
    tooltip.textContent = text;
    tooltip.hidden = false;
    const left = ev.clientX - rect.left + 14;
    tooltip.style.left = Math.min(left, rect.width - tooltip.offsetWidth - 4) + "px";
    tooltip.style.top = (ev.clientY - rect.top + 14) + "px";
  }

  function zoomTo(from, to) {
    const min = 0.05; // 50 µs: below this the recorded times (ms) say nothing
    if (to - from < min) { const mid = (from + to) / 2; from = mid - min / 2; to = mid + min / 2; }
    view = { from, to };
    tooltip.hidden = true;
    draw();
    refresh(false);
  }

  async function showTask(a) {
    const panel = document.getElementById("task-panel");
    panel.hidden = false;
    document.getElementById("task-title").textContent = a.name + " (" + a.state + ")";
    const meta = document.getElementById("task-meta");
    meta.textContent = "task " + a.task_id + ", attempt " + a.attempt + ", " + A.duration(a.to - a.from) + " ";
    const link = document.createElement("a");
    link.href = "/sessions/" + session + "/#/jobs/" + a.job_id + "/tasks/" + a.task_id;
    link.textContent = "open in Ray's dashboard";
    meta.appendChild(link);
    const lane = data.lanes[a.lane] || {};
    if (lane.worker_id) {
      // What its worker printed under this task's name (Ray's :task_name: marker lines), in every file of that
      // worker, with context. Not by time: raw stdout/stderr lines carry none.
      const quoted = '"' + a.name.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
      const params = new URLSearchParams({ q: "worker_id: " + lane.worker_id + " task_name: " + quoted, node_id: lane.node_id });
      const logs = document.createElement("a");
      logs.id = "task-logs";
      logs.href = "/sessions/" + session + "/search?" + params;
      logs.textContent = "this task's logs";
      meta.append(" \u00b7 ", logs);
    }
    const zoom = document.createElement("button");
    zoom.type = "button"; zoom.id = "zoom-task"; zoom.textContent = "zoom to this task";
    zoom.addEventListener("click", () => {
      const pad = Math.max((a.to - a.from) * 0.05, 0.5);
      zoomTo(a.from - pad, a.to + pad);
    });
    meta.append(" ", zoom);
    for (const suffix of ["out", "err"]) {
      const pre = document.getElementById("task-" + suffix);
      pre.textContent = "loading…";
      const url = "/sessions/" + session + "/api/v0/logs/file?task_id=" + a.task_id + "&attempt_number=" + a.attempt +
        "&suffix=" + suffix + "&lines=-1&filter_ansi_code=true";
      try {
        const r = await fetch(url);
        pre.textContent = r.ok ? ((await r.text()) || "(empty)") : "no " + suffix + " log archived for this task";
      } catch (e) {
        pre.textContent = "could not load the log: " + e;
      }
    }
  }

  canvas.addEventListener("wheel", (ev) => {
    if (!view) return;
    ev.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const frac = Math.min(1, Math.max(0, (ev.clientX - rect.left - GUTTER) / plotWidth()));
    const at = view.from + frac * (view.to - view.from);
    const span = (view.to - view.from) * (ev.deltaY < 0 ? 0.8 : 1.25);
    zoomTo(at - frac * span, at - frac * span + span);
  }, { passive: false });
  canvas.addEventListener("mousedown", (ev) => { if (view) drag = { x: ev.clientX, view: { ...view }, moved: false }; });
  window.addEventListener("mouseup", (ev) => {
    if (drag && !drag.moved) {
      const rect = canvas.getBoundingClientRect();
      const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
      const row = rowAt(py);
      if (px < GUTTER && row >= 0 && rows[row].kind === "node" && rows[row].canFold) {
        const node = rows[row].node;
        if (collapsed.has(node)) collapsed.delete(node); else collapsed.add(node);
        layoutRows(); draw();
      } else {
        const a = attemptAt(px, py);
        if (a) showTask(a);
        else { const d = densityAt(px, py); if (d) zoomTo(d.from - (d.to - d.from) * 2, d.to + (d.to - d.from) * 2); }
      }
    } else if (drag && drag.moved) refresh(false);
    drag = null;
  });
  canvas.addEventListener("mousemove", (ev) => {
    if (!view) return;
    if (drag) {
      const dx = ev.clientX - drag.x;
      if (Math.abs(dx) > 2) drag.moved = true;
      const per = (drag.view.to - drag.view.from) / plotWidth();
      view = { from: drag.view.from - dx * per, to: drag.view.to - dx * per };
      draw();
      return;
    }
    const rect = canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
    const a = attemptAt(px, py);
    if (a) { showTip(ev, tooltipText(a)); return; }
    const d = densityAt(px, py);
    if (d && Object.keys(d.byKey).length) {
      const parts = Object.entries(d.byKey).map(([k, v]) => k + ": " + v);
      showTip(ev, rows[d.row].label + "\n" + A.full(d.from) + " + " + A.duration(d.to - d.from) + "\n" +
        parts.join(" · ") + (parts.length === 1 && parts[0].endsWith(": 1") ? " attempt" : " attempts") +
        "\nclick to zoom in");
      return;
    }
    tooltip.hidden = true;
  });
  canvas.addEventListener("mouseleave", () => { tooltip.hidden = true; });

  const refilter = () => { seq++; collapsed = new Set(); data = null; refresh(true); };
  document.getElementById("f-job").addEventListener("change", (e) => { filters.job = e.target.value; refilter(); });
  document.getElementById("f-function").addEventListener("change", (e) => { filters.function = e.target.value; refilter(); });
  document.getElementById("f-state").addEventListener("change", (e) => { filters.state = e.target.value; refilter(); });
  document.getElementById("color-by").addEventListener("change", (e) => { colorBy = e.target.value; refresh(false); });
  document.getElementById("search").addEventListener("input", (e) => {
    search = e.target.value.trim();
    if (data) { draw(); describe(); }
  });
  document.getElementById("controls").addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("reset").addEventListener("click", () => { if (extent) zoomTo(extent.start, extent.end); });
  window.addEventListener("resize", () => { if (data) { draw(); refresh(false); } });

  // For tests and benchmarks: where a task's bar is (CSS pixels from the canvas's top left), the view, timings.
  window.__rayhistoryTimeline = {
    locate(taskId) {
      const a = attempts.find((t) => t.task_id === taskId);
      if (!a || a.lane < 0) return null;
      const a0 = Math.max(x(a.from), GUTTER), a1 = Math.max(x(a.to), a0 + 1);
      const run = a.start_ms != null ? Math.max(x(a.start_ms), GUTTER) : a0;
      return { x: (Math.max(run, a0) + a1) / 2, y: AXIS + laneRow[a.lane] * ROW + ROW / 2, width: a1 - a0,
        plot: plotWidth() };
    },
    view() { return view && { ...view }; },
    zoomTo,
    // fn draws over the bars; keep ("task_id:attempt" strings), when given, are drawn bright and the rest dimmed.
    setOverlay(fn, keys) { overlay = fn; keep = fn && keys ? keys : null; draw(); },
    x(t) { return x(t); },
    laneY(lane, nodeRank) { return data ? laneY(lane, nodeRank) : null; },
    state() {
      return data && { mode: data.mode, total: data.total, start: data.start, end: data.end, seq,
        drawn: Number(canvas.dataset.tasksDrawn) };
    },
    stats,
  };
  refresh(true);
})();
