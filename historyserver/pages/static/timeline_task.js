// The panel of the task clicked on the timeline: its link into Ray's dashboard, its logs in our search, a button
// that zooms to it, and its archived stdout and stderr.
(function () {
  "use strict";
  const T = window.TimelinePage, S = T.state, A = window.TimelineAxis;
  const session = T.session;

  T.showTask = async function showTask(a) {
    const panel = document.getElementById("task-panel");
    panel.hidden = false;
    document.getElementById("task-title").textContent = a.name + " (" + a.state + ")";
    const meta = document.getElementById("task-meta");
    meta.textContent = "task " + a.task_id + ", attempt " + a.attempt + ", " + A.duration(a.to - a.from) + " ";
    const link = document.createElement("a");
    link.href = "/sessions/" + session + "/#/jobs/" + a.job_id + "/tasks/" + a.task_id;
    link.textContent = "open in Ray's dashboard";
    meta.appendChild(link);
    const lane = S.data.lanes[a.lane] || {};
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
      T.zoomTo(a.from - pad, a.to + pad);
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
  };
})();
