// Drawing the timeline on its canvas: the axis, the rows, per-lane density or the attempts with their phases, the
// overlay (timeline_path.js), the legend and the status line. Reads T.state; never fetches.
(function () {
  "use strict";
  const T = window.TimelinePage, S = T.state, A = window.TimelineAxis;
  const { canvas, ctx, legend, status, stats, ROW, GUTTER, AXIS, PHASE_COLORS } = T;
  const { css, x, plotWidth, keyColor, attemptKey, matches, phases, laneY } = T;

  function size() {
    const width = canvas.clientWidth;
    const height = AXIS + S.rows.length * ROW + 6;
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
    const view = S.view, extent = S.extent;
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
    for (const t of wall.times) ctx.fillRect(x(t), AXIS, 1, S.rows.length * ROW);
  }

  function drawRows(width) {
    const band = css("--band", "#f3f3f3"), fg = css("--fg", "#222"), muted = css("--muted", "#666");
    S.rows.forEach((r, i) => {
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
    const data = S.data, laneRow = S.laneRow;
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
    const view = S.view, keep = S.keep;
    let drawn = 0;
    const searching = !!S.search;
    const hl = css("--highlight", "#1e6fff"), onBar = "#fff";
    ctx.font = "10px system-ui, sans-serif";
    for (const a of S.attempts) {
      if (a.to < view.from || a.from > view.to || a.lane < 0) continue;
      const row = S.laneRow[a.lane], y = AXIS + row * ROW + 2, h = ROW - 4;
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

  T.draw = function draw() {
    const data = S.data;
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
    if (S.overlay) S.overlay({ ctx, x, width, laneY, ROW, view: S.view });
    ctx.restore();
    const took = performance.now() - began;
    stats.draws++; stats.lastDrawMs = took; stats.maxDrawMs = Math.max(stats.maxDrawMs, took);
    canvas.dataset.mode = data.mode;
  };

  T.drawLegend = function drawLegend() {
    const data = S.data;
    const items = [];
    const keys = data.mode === "density" ? data.density.keys
      : [...new Set(S.attempts.map(attemptKey))].sort();
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
      : "thick: running, thin: waiting (" + S.colorBy + " colours the running part)";
    legend.append(note);
  };

  T.describe = function describe() {
    const data = S.data, view = S.view, search = S.search;
    const n = data.total.toLocaleString();
    let s = n + " task attempts in view (" + A.duration(view.to - view.from) + ") on " + data.lanes.length +
      (data.rows === "worker" ? " workers" : " nodes");
    if (data.mode === "density") s += "; showing their density: zoom in below " +
      data.limits.attempts.toLocaleString() + " attempts to see each one";
    if (search && data.mode === "attempts") s += "; " + S.attempts.filter(matches).length + " match “" + search + "”";
    status.textContent = s + ".";
  };
})();
