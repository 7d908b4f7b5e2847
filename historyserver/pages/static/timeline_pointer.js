// The pointer on the timeline: what is under it (an attempt, or a density cell), its tooltip, wheel to zoom, drag to
// pan, and clicks (a node's name folds its workers, an attempt opens its panel, a density cell zooms in).
(function () {
  "use strict";
  const T = window.TimelinePage, S = T.state, A = window.TimelineAxis;
  const { canvas, tooltip, GUTTER } = T;
  const { x, tAt, plotWidth, phases, rowAt } = T;

  function attemptAt(px, py) {
    const row = rowAt(py);
    if (row < 0 || S.data.mode !== "attempts") return null;
    // Waiting phases of a queued attempt overlap the attempts running on its worker before it: a running part
    // under the pointer wins over a waiting one.
    let best = null, bestRank = -1;
    for (const a of S.attempts) {
      if (S.laneRow[a.lane] !== row) continue;
      const a0 = x(a.from), a1 = Math.max(x(a.to), a0 + 3);
      if (px < a0 - 2 || px > a1 + 2) continue;
      const r0 = a.start_ms != null ? x(a.start_ms) : a0;
      const rank = px >= r0 - 2 ? 1 : 0;
      if (rank > bestRank || (rank === bestRank && a.from >= best.from)) { best = a; bestRank = rank; }
    }
    return best;
  }

  function densityAt(px, py) {
    const data = S.data, laneRow = S.laneRow;
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
    const data = S.data;
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

  canvas.addEventListener("wheel", (ev) => {
    const view = S.view;
    if (!view) return;
    ev.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const frac = Math.min(1, Math.max(0, (ev.clientX - rect.left - GUTTER) / plotWidth()));
    const at = view.from + frac * (view.to - view.from);
    const span = (view.to - view.from) * (ev.deltaY < 0 ? 0.8 : 1.25);
    T.zoomTo(at - frac * span, at - frac * span + span);
  }, { passive: false });
  canvas.addEventListener("mousedown", (ev) => { if (S.view) S.drag = { x: ev.clientX, view: { ...S.view }, moved: false }; });
  window.addEventListener("mouseup", (ev) => {
    const drag = S.drag, rows = S.rows;
    if (drag && !drag.moved) {
      const rect = canvas.getBoundingClientRect();
      const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
      const row = rowAt(py);
      if (px < GUTTER && row >= 0 && rows[row].kind === "node" && rows[row].canFold) {
        const node = rows[row].node;
        if (S.collapsed.has(node)) S.collapsed.delete(node); else S.collapsed.add(node);
        T.layoutRows(); T.draw();
      } else {
        const a = attemptAt(px, py);
        if (a) T.showTask(a);
        else { const d = densityAt(px, py); if (d) T.zoomTo(d.from - (d.to - d.from) * 2, d.to + (d.to - d.from) * 2); }
      }
    } else if (drag && drag.moved) T.refresh(false);
    S.drag = null;
  });
  canvas.addEventListener("mousemove", (ev) => {
    if (!S.view) return;
    const drag = S.drag;
    if (drag) {
      const dx = ev.clientX - drag.x;
      if (Math.abs(dx) > 2) drag.moved = true;
      const per = (drag.view.to - drag.view.from) / plotWidth();
      S.view = { from: drag.view.from - dx * per, to: drag.view.to - dx * per };
      T.draw();
      return;
    }
    const rect = canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
    const a = attemptAt(px, py);
    if (a) { showTip(ev, tooltipText(a)); return; }
    const d = densityAt(px, py);
    if (d && Object.keys(d.byKey).length) {
      const parts = Object.entries(d.byKey).map(([k, v]) => k + ": " + v);
      showTip(ev, S.rows[d.row].label + "\n" + A.full(d.from) + " + " + A.duration(d.to - d.from) + "\n" +
        parts.join(" · ") + (parts.length === 1 && parts[0].endsWith(": 1") ? " attempt" : " attempts") +
        "\nclick to zoom in");
      return;
    }
    tooltip.hidden = true;
  });
  canvas.addEventListener("mouseleave", () => { tooltip.hidden = true; });
})();
