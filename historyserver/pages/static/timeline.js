// The job timeline: task attempts over time, one lane per (node, worker), drawn on a canvas.
// No library and no CDN: the page must work for a cluster that is long gone, from an offline network.
(function () {
  "use strict";
  const canvas = document.getElementById("timeline");
  const ctx = canvas.getContext("2d");
  const tooltip = document.getElementById("tooltip");
  const status = document.getElementById("status");
  const session = canvas.dataset.session;
  const job = canvas.dataset.job;
  const LANE = 18, GUTTER = 170, AXIS = 24;
  const COLORS = { FINISHED: "#3b8f3b", FAILED: "#c0392b", RUNNING: "#e69500" };
  let tasks = [], lanes = [], t0 = 0, t1 = 1, view = null, drag = null;

  function color(t) { return t.unfinished ? "#e69500" : (COLORS[t.state] || "#7a7a7a"); }

  function layout(data) {
    const col = Object.fromEntries(data.columns.map((c, i) => [c, i]));
    const laneIndex = new Map();
    tasks = data.rows.map((r) => {
      const key = r[col.node_id] + "/" + r[col.worker_id];
      if (!laneIndex.has(key)) {
        laneIndex.set(key, lanes.length);
        lanes.push({ node: r[col.node_id], worker: r[col.worker_id] });
      }
      return {
        id: r[col.task_id], attempt: r[col.attempt], name: r[col.name], state: r[col.state],
        start: r[col.start_ms], end: Math.max(r[col.end_ms], r[col.start_ms]), job: r[col.job_id],
        unfinished: r[col.unfinished], lane: laneIndex.get(key), node: r[col.node_id], worker: r[col.worker_id],
      };
    });
    t0 = Math.min(...tasks.map((t) => t.start));
    t1 = Math.max(...tasks.map((t) => t.end), t0 + 1);
    view = { from: t0, to: t1 };
  }

  function x(t, width) { return GUTTER + ((t - view.from) / (view.to - view.from)) * (width - GUTTER - 10); }

  function draw() {
    const width = canvas.clientWidth;
    const height = AXIS + lanes.length * LANE + 10;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.height = height + "px";
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#444";
    const span = view.to - view.from;
    for (let i = 0; i <= 5; i++) {
      const t = view.from + (span * i) / 5;
      const px = x(t, width);
      ctx.fillRect(px, AXIS - 6, 1, 6);
      ctx.fillText(((t - t0) / 1000).toFixed(span < 5000 ? 3 : 1) + " s", px + 2, AXIS - 8);
    }
    lanes.forEach((l, i) => {
      ctx.fillStyle = i % 2 ? "#fafafa" : "#f0f0f0";
      ctx.fillRect(0, AXIS + i * LANE, width, LANE);
      ctx.fillStyle = "#333";
      const label = l.worker ? l.node.slice(0, 8) + " / " + l.worker.slice(0, 8) : "never on a worker";
      ctx.fillText(label, 4, AXIS + i * LANE + 13);
    });
    let drawn = 0;
    for (const t of tasks) {
      if (t.end < view.from || t.start > view.to) continue;
      const a = x(t.start, width), b = Math.max(x(t.end, width), a + 1);
      ctx.fillStyle = color(t);
      ctx.fillRect(a, AXIS + t.lane * LANE + 3, b - a, LANE - 6);
      drawn++;
    }
    canvas.dataset.tasksDrawn = String(drawn);
  }

  function taskAt(ev) {
    const rect = canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
    const lane = Math.floor((py - AXIS) / LANE);
    const width = canvas.clientWidth;
    let best = null;
    for (const t of tasks) {
      if (t.lane !== lane) continue;
      const a = x(t.start, width), b = Math.max(x(t.end, width), a + 3);
      if (px >= a - 2 && px <= b + 2) best = t;
    }
    return best;
  }

  async function showTask(t) {
    const panel = document.getElementById("task-panel");
    panel.hidden = false;
    document.getElementById("task-title").textContent = t.name + " (" + t.state + ")";
    const meta = document.getElementById("task-meta");
    meta.textContent = "task " + t.id + ", attempt " + t.attempt + ", " + (t.end - t.start).toFixed(0) + " ms ";
    const link = document.createElement("a");
    link.href = "/sessions/" + session + "/#/jobs/" + t.job + "/tasks/" + t.id;
    link.textContent = "open in Ray's dashboard";
    meta.appendChild(link);
    if (t.worker) {
      // What its worker printed under this task's name (Ray's :task_name: marker lines), in every file of that
      // worker, with context. Not by time: raw stdout/stderr lines carry none.
      const quoted = '"' + t.name.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
      const params = new URLSearchParams({ q: "worker_id: " + t.worker + " task_name: " + quoted, node_id: t.node });
      const logs = document.createElement("a");
      logs.id = "task-logs";
      logs.href = "/sessions/" + session + "/search?" + params;
      logs.textContent = "this task's logs";
      meta.append(" \u00b7 ", logs);
    }
    for (const suffix of ["out", "err"]) {
      const pre = document.getElementById("task-" + suffix);
      pre.textContent = "loading…";
      const url = "/sessions/" + session + "/api/v0/logs/file?task_id=" + t.id + "&attempt_number=" + t.attempt +
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
    ev.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const width = canvas.clientWidth;
    const frac = Math.min(1, Math.max(0, (ev.clientX - rect.left - GUTTER) / (width - GUTTER - 10)));
    const at = view.from + frac * (view.to - view.from);
    const k = ev.deltaY < 0 ? 0.8 : 1.25;
    const span = Math.max((view.to - view.from) * k, 0.01);
    view = { from: at - frac * span, to: at - frac * span + span };
    draw();
  }, { passive: false });
  canvas.addEventListener("mousedown", (ev) => { drag = { x: ev.clientX, view: { ...view }, moved: false }; });
  window.addEventListener("mouseup", (ev) => {
    if (drag && !drag.moved) {
      const t = taskAt(ev);
      if (t) showTask(t);
    }
    drag = null;
  });
  canvas.addEventListener("mousemove", (ev) => {
    if (drag) {
      const dx = ev.clientX - drag.x;
      if (Math.abs(dx) > 2) drag.moved = true;
      const per = (drag.view.to - drag.view.from) / (canvas.clientWidth - GUTTER - 10);
      view = { from: drag.view.from - dx * per, to: drag.view.to - dx * per };
      draw();
      return;
    }
    const t = taskAt(ev);
    tooltip.hidden = !t;
    if (t) {
      const rect = canvas.getBoundingClientRect();
      tooltip.textContent = t.name + "\n" + t.state + (t.unfinished ? " (unfinished)" : "") + "\n" +
        (t.end - t.start).toFixed(1) + " ms";
      tooltip.style.left = (ev.clientX - rect.left + 12) + "px";
      tooltip.style.top = (ev.clientY - rect.top + 12) + "px";
    }
  });
  // Where a task's bar is on the canvas (CSS pixels from its top left): for tests and for linking to a task.
  window.__rayhistoryTimeline = {
    locate(taskId) {
      const t = tasks.find((task) => task.id === taskId);
      if (!t) return null;
      const width = canvas.clientWidth;
      const a = x(t.start, width), b = Math.max(x(t.end, width), a + 1);
      return { x: (a + b) / 2, y: AXIS + t.lane * LANE + LANE / 2 };
    },
  };
  document.getElementById("reset").addEventListener("click", () => { view = { from: t0, to: t1 }; draw(); });
  window.addEventListener("resize", () => view && draw());

  fetch("/api/v1/sessions/" + session + "/timeline" + (job ? "?job_id=" + encodeURIComponent(job) : ""))
    .then((r) => r.ok ? r.json() : r.json().then((e) => Promise.reject(new Error(e.error.message))))
    .then((data) => {
      if (!data.rows.length) { status.textContent = "No task attempts with a start time."; return; }
      layout(data);
      status.textContent = data.shown + " task attempts on " + lanes.length + " workers" +
        (data.shown < data.total ? " (the first " + data.shown + " of " + data.total + ")" : "") + ".";
      draw();
    })
    .catch((e) => { status.textContent = "Could not load the timeline: " + e.message; });
})();
