// Time formatting and axis ticks for the timeline: wall-clock (UTC) and relative time, ticks at round units.
// UTC, not the viewer's zone: a timeline's URL is pasted into chats across zones and must read the same everywhere.
(function () {
  "use strict";
  const MS = 1, S = 1000, M = 60 * S, H = 60 * M, D = 24 * H;
  const STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, S, 2 * S, 5 * S, 10 * S, 15 * S, 30 * S, M, 2 * M, 5 * M,
    10 * M, 15 * M, 30 * M, H, 2 * H, 3 * H, 6 * H, 12 * H, D, 2 * D, 7 * D, 14 * D, 30 * D].map((s) => s * MS);

  function pad(n, w) { return String(n).padStart(w || 2, "0"); }

  function date(t) {
    const d = new Date(t);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }

  // Wall-clock time to the precision the step needs; the date when the step is a day or more.
  function clock(t, step) {
    const d = new Date(t);
    if (step >= D) return date(t);
    let s = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    if (step < M) s += ":" + pad(d.getUTCSeconds());
    if (step < S) s += "." + pad(d.getUTCMilliseconds(), 3);
    return s;
  }

  // A duration as people read it: 850 ms, 12.4 s, 3m 05s, 2h 10m, 3d 4h.
  function duration(ms) {
    if (ms == null || isNaN(ms)) return "";
    const a = Math.abs(ms), sign = ms < 0 ? "-" : "";
    if (a < 1) return sign + a.toFixed(2) + " ms";
    if (a < S) return sign + Math.round(a) + " ms";
    if (a < M) return sign + (a / S).toFixed(a < 10 * S ? 2 : 1) + " s";
    if (a < H) return sign + Math.floor(a / M) + "m " + pad(Math.floor((a % M) / S)) + "s";
    if (a < D) return sign + Math.floor(a / H) + "h " + pad(Math.floor((a % H) / M)) + "m";
    return sign + Math.floor(a / D) + "d " + Math.floor((a % D) / H) + "h";
  }

  // Relative offset at a tick: the unit the step is counted in, so labels stay short and round.
  function relative(ms, step) {
    if (ms === 0) return "0";
    if (step < S) return "+" + (ms / S).toFixed(step < 10 ? 3 : step < 100 ? 2 : 1) + " s";
    return "+" + duration(ms);
  }

  function full(t) {
    if (t == null) return "";
    return date(t) + " " + clock(t, 1) + " UTC";
  }

  // Tick times in [from, to]: a round step leaving at least minPx between ticks, aligned to `origin` (0 = wall
  // clock, UTC midnight based; a start time = relative time).
  function ticks(from, to, pxWidth, minPx, origin) {
    const span = to - from;
    const want = span * minPx / Math.max(1, pxWidth);
    const step = STEPS.find((s) => s >= want) || Math.ceil(want / (30 * D)) * 30 * D;
    const base = origin || 0;
    const out = [];
    for (let t = base + Math.ceil((from - base) / step) * step; t <= to && out.length < 1000; t += step) out.push(t);
    return { step, times: out };
  }

  window.TimelineAxis = { ticks, clock, date, duration, relative, full, DAY: D };
})();
