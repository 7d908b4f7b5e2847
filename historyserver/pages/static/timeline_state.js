// The timeline page's shared parts: its elements, its state, and the geometry the other timeline_*.js files draw
// and hit-test with. One namespace object (window.TimelinePage) holds them rather than one closure, so the page can
// live in files named for what they do without a bundler; templates/timeline.html loads them in order:
// timeline_axis.js, this file, timeline_draw.js, timeline_pointer.js, timeline_task.js, timeline.js, timeline_path.js.
(function () {
  "use strict";
  const canvas = document.getElementById("timeline");
  const T = (window.TimelinePage = {
    canvas,
    ctx: canvas.getContext("2d"),
    tooltip: document.getElementById("tooltip"),
    status: document.getElementById("status"),
    legend: document.getElementById("legend"),
    session: canvas.dataset.session,
    ROW: 18, GUTTER: 190, AXIS: 40, RIGHT: 12,
    STATE_COLORS: { FINISHED: "#3b8f3b", FAILED: "#c0392b", RUNNING: "#e69500", UNFINISHED: "#e69500" },
    PALETTE: ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
      "#9c755f", "#2f9e9e", "#8cd17d", "#d37295"],
    // Waiting phases: thinner than running and in their own colours, so scheduling delay reads beside run time.
    PHASE_COLORS: ["#8e9aaf", "#d4a017", "#6c8ebf"],
    OTHER: "#9a9a9a",
    // Mutable, shared by every file: read and written as T.state.<name>, never copied into a local.
    state: {
      data: null,          // the last answer
      view: null,          // the visible window {from, to} (epoch ms)
      extent: null,        // the filtered attempts' whole range
      rows: [], laneRow: [], collapsed: new Set(), attempts: [], drag: null, pending: null, seq: 0,
      colorBy: "state", search: "",
      overlay: null, keep: null, laneIndex: new Map(),  // drawn over the bars, whatever the mode (timeline_path.js: the critical path)
    },
    stats: { draws: 0, lastDrawMs: 0, maxDrawMs: 0, requests: [] },
    filters: { job: canvas.dataset.job || "", function: "", state: "" },
  });
  const S = T.state;
  const { ROW, GUTTER, AXIS, RIGHT } = T;

  T.css = function css(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  };
  T.plotWidth = function plotWidth() { return Math.max(50, canvas.clientWidth - GUTTER - RIGHT); };
  T.x = function x(t) { return GUTTER + ((t - S.view.from) / (S.view.to - S.view.from)) * T.plotWidth(); };
  T.tAt = function tAt(px) { return S.view.from + ((px - GUTTER) / T.plotWidth()) * (S.view.to - S.view.from); };

  T.keyColor = function keyColor(key) {
    if (key == null) return T.OTHER;
    if (S.colorBy === "state") return T.STATE_COLORS[key] || T.OTHER;
    const list = S.colorBy === "job" ? S.data.facets.jobs : S.data.facets.functions;
    const i = list.indexOf(key);
    return i < 0 ? T.OTHER : T.PALETTE[i % T.PALETTE.length];
  };
  T.attemptKey = function attemptKey(a) {
    if (S.colorBy === "state") return a.unfinished ? "UNFINISHED" : a.state;
    return S.colorBy === "job" ? a.job_id : a.function;
  };
  T.matches = function matches(a) {
    if (!S.search) return true;
    const q = S.search.toLowerCase();
    return [a.name, a.function, a.task_id].some((v) => v && v.toLowerCase().includes(q));
  };

  // Rows: each node, then (unless folded) its workers; laneRow maps a lane of the answer to its row.
  T.layoutRows = function layoutRows() {
    const data = S.data;
    S.rows = []; S.laneRow = [];
    const rows = S.rows, laneRow = S.laneRow;
    S.laneIndex = new Map(data.lanes.map((l, i) => [l.id, i]));
    const byNode = new Map();
    data.lanes.forEach((lane, i) => {
      if (!byNode.has(lane.node_id)) byNode.set(lane.node_id, []);
      byNode.get(lane.node_id).push(i);
    });
    for (const [node, lanes] of byNode) {
      const first = data.lanes[lanes[0]];
      const label = node ? (first.node_ip || node.slice(0, 8)) : "never placed on a node";
      const perWorker = data.rows === "worker" && node;
      const folded = !perWorker || S.collapsed.has(node);
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
  };

  T.toAttempts = function toAttempts() {
    const data = S.data;
    S.attempts = [];
    if (data.mode !== "attempts") return;
    const c = Object.fromEntries(data.columns.map((name, i) => [name, i]));
    for (const r of data.attempts) {
      const a = {};
      for (const name of data.columns) a[name] = r[c[name]];
      a.from = a.creation_ms ?? a.start_ms;
      a.to = Math.max(a.end_ms ?? a.from, a.from);
      S.attempts.push(a);
    }
  };

  // Phases: each from its time to the next present one (the last, running, to the end).
  T.phases = function phases(a) {
    const stamps = [a.creation_ms, a.pending_node_ms, a.submitted_ms, a.start_ms];
    const out = [];
    for (let i = 0; i < stamps.length; i++) {
      if (stamps[i] == null) continue;
      let next = a.to;
      for (let j = i + 1; j < stamps.length; j++) if (stamps[j] != null) { next = stamps[j]; break; }
      out.push({ phase: i, from: stamps[i], to: Math.max(next, stamps[i]) });
    }
    return out;
  };

  // The top of the row a lane of the table is drawn in (steps carry their lane and node rank), or null when the
  // filters leave that lane out.
  T.laneY = function laneY(lane, nodeRank) {
    const id = S.data.rows === "node" ? nodeRank : lane;
    const i = S.laneIndex.get(id);
    return i == null || S.laneRow[i] == null ? null : AXIS + S.laneRow[i] * ROW;
  };

  T.rowAt = function rowAt(py) { const r = Math.floor((py - AXIS) / ROW); return r >= 0 && r < S.rows.length ? r : -1; };
})();
