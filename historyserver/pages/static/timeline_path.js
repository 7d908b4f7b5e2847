// The critical path on the timeline page: a toggle that asks /api/v1/sessions/{id}/timeline/critical_path for the
// selected job, outlines the path's steps over the bars (a dashed line for each wait, a frame for each run, and a
// link from each step to the next) and lists the steps with their wait and run; a step's row zooms to it.
(function () {
  "use strict";
  const T = window.__rayhistoryTimeline, A = window.TimelineAxis;
  const toggle = document.getElementById("f-path");
  const panel = document.getElementById("path-panel");
  const summary = document.getElementById("path-summary");
  const body = document.getElementById("path-steps");
  const session = document.getElementById("timeline").dataset.session;
  let path = null, seq = 0;

  function color() {
    return getComputedStyle(document.documentElement).getPropertyValue("--path").trim() || "#c2185b";
  }

  function drawPath(h) {
    if (!path) return;
    const { ctx, x } = h;
    ctx.strokeStyle = color(); ctx.fillStyle = color();
    let prev = null;
    for (const s of path.steps) {
      const top = h.laneY(s.lane, s.node_rank);
      if (top == null) { prev = null; continue; }
      const y = top + h.ROW / 2, x0 = x(s.ready_ms), x1 = x(s.start_ms), x2 = Math.max(x(s.until_ms), x1 + 2);
      if (prev) { // from where the previous step released this one
        ctx.lineWidth = 1.5; ctx.setLineDash([]);
        ctx.beginPath(); ctx.moveTo(prev.x, prev.y); ctx.lineTo(x0, y); ctx.stroke();
      }
      ctx.lineWidth = 2; ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
      ctx.setLineDash([]); ctx.lineWidth = 2.5;
      ctx.strokeRect(x1, top + 1.5, x2 - x1, h.ROW - 3);
      prev = { x: x2, y };
    }
    ctx.setLineDash([]);
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function render() {
    const p = path;
    summary.textContent = "Job " + p.job_id + ": " + p.steps.length + (p.steps.length === 1 ? " step" : " steps") +
      " over " + A.duration(p.end - p.start) + " (waiting " + A.duration(p.wait_ms) + ", running " +
      A.duration(p.run_ms) + ") decided when its " + p.attempts.toLocaleString() + " task attempts finished" +
      (p.truncated ? "; only the last " + p.steps.length + " steps are listed" : "") + ". Click a step to zoom to it.";
    body.replaceChildren(...p.steps.map((s, i) => {
      const tr = document.createElement("tr");
      tr.className = "path-step";
      tr.dataset.task = s.task_id;
      tr.tabIndex = 0;
      tr.title = p.via[s.via];
      tr.append(
        cell(String(i + 1), "num"),
        cell((s.name || s.function || s.task_id) + (s.attempt ? " (attempt " + s.attempt + ")" : "")),
        cell(s.via === "first" ? "start" : s.via),
        cell(A.duration(s.wait_ms), "num"),
        cell(A.duration(s.run_ms), "num"),
        cell("+" + A.duration(s.start_ms - p.start), "num"),
        cell(s.state + (s.error_type ? " · " + s.error_type : ""), s.state),
      );
      const zoom = () => {
        const pad = Math.max((s.until_ms - s.ready_ms) * 0.1, 0.5);
        T.zoomTo(s.ready_ms - pad, s.until_ms + pad);
      };
      tr.addEventListener("click", zoom);
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") zoom(); });
      return tr;
    }));
  }

  async function load() {
    const mine = ++seq;
    const job = document.getElementById("f-job").value;
    const params = new URLSearchParams();
    if (job) params.set("job_id", job);
    panel.hidden = false;
    summary.textContent = "Finding the critical path…";
    body.replaceChildren();
    try {
      const r = await fetch("/api/v1/sessions/" + session + "/timeline/critical_path?" + params);
      const answer = await r.json();
      if (mine !== seq) return;
      if (!r.ok) throw new Error(answer.error ? answer.error.message : r.statusText);
      path = answer;
      render();
      T.setOverlay(drawPath, new Set(answer.steps.map((s) => s.task_id + ":" + s.attempt)));
      panel.dataset.ready = String(mine);
    } catch (e) {
      if (mine !== seq) return;
      path = null;
      T.setOverlay(null);
      summary.textContent = "No critical path: " + e.message;
    }
  }

  function off() { seq++; path = null; panel.hidden = true; T.setOverlay(null); }

  toggle.addEventListener("change", () => { if (toggle.checked) load(); else off(); });
  document.getElementById("f-job").addEventListener("change", () => { if (toggle.checked) load(); });
  if (toggle.checked) load();
  window.__rayhistoryPath = { steps: () => path && path.steps.map((s) => ({ ...s })), load };
})();
