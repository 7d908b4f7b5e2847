// The search pages: the form's URL is the whole state; this asks the JSON API with the same parameters and draws
// hits (highlighted, with context expanded in place), facets and the hits-over-time chart. No library but uPlot.
(function () {
  "use strict";
  const form = document.getElementById("search-form");
  const q = document.getElementById("q");
  const status = document.getElementById("search-status");
  const hitsList = document.getElementById("hits");
  const more = document.getElementById("more");
  const API = form.dataset.api;
  const PAGE = 100, MAX_RETRIES = 12; // about 70 s of asking again (retryDelay)
  const FACET_NAMES = { node_id: "node", file: "file", level: "level", job_id: "job" };
  let shown = 0, nextCursor = null, started = 0, generation = 0;

  // `/` focuses the query box, as on many sites with search; not while typing in a field.
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    ev.preventDefault();
    q.focus();
    q.select();
  });

  // Submitting navigates to the clean URL of the new state (no empty parameters): the page then searches on load.
  function stateParams() {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim() !== "") params.append(k, String(v).trim());
    return params;
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const params = stateParams();
    location.assign(location.pathname + (params.toString() ? "?" + params : ""));
  });
  form.addEventListener("click", (ev) => {
    const b = ev.target.closest(".unchip");
    if (!b) return;
    b.closest(".chip").remove();
    form.requestSubmit();
  });
  function addFilter(name, value) {
    const chip = document.createElement("input");
    chip.type = "hidden";
    chip.name = name;
    chip.value = value;
    form.appendChild(chip);
    form.requestSubmit();
  }

  function toEpoch(text) {
    if (/^\d+(\.\d+)?$/.test(text)) return text;
    const withZone = /[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : text + "Z";
    const ms = Date.parse(withZone);
    if (Number.isNaN(ms)) throw new Error("not a time: " + text + " (give epoch seconds or ISO 8601, e.g. 2026-01-31T12:00:00)");
    return String(ms / 1000);
  }
  function apiParams(extra) {
    const params = stateParams();
    for (const name of ["since", "until"]) if (params.has(name)) params.set(name, toEpoch(params.get(name)));
    for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
    return params;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON: said below */ }
    if (!r.ok) {
      const err = new Error(body && body.error ? body.error.message : "HTTP " + r.status);
      err.status = r.status;
      err.position = body && body.error ? body.error.position : undefined;
      throw err;
    }
    if (!body) throw new Error("the server did not answer JSON");
    return body;
  }

  function setStatus(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }
  function showError(e) {
    let text = "Could not search: " + e.message;
    const m = /at position (\d+)/.exec(e.message);
    const pos = typeof e.position === "number" ? e.position : m ? Number(m[1]) : null;
    if (pos !== null && e.status === 400 && q.value) text += "\n  " + q.value + "\n  " + " ".repeat(pos) + "^";
    setStatus(text, "error");
    if (pos !== null && e.status === 400) { q.focus(); q.setSelectionRange(pos, pos); }
  }

  function when(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }

  function highlighted(message, ranges) {
    const frag = document.createDocumentFragment();
    let at = 0;
    for (const [a, b] of (ranges || []).slice().sort((x, y) => x[0] - y[0])) {
      if (a < at || b > message.length) continue;
      frag.append(message.slice(at, a));
      const mark = document.createElement("mark");
      mark.textContent = message.slice(a, b);
      frag.append(mark);
      at = b;
    }
    frag.append(message.slice(at));
    return frag;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function renderHit(hit) {
    const li = el("li");
    li.dataset.kind = hit.kind;
    const where = el("span", "hit-where");
    const prefix = form.dataset.session ? "" : hit.session + "/";
    const link = el("a");
    link.href = hit.url;
    if (hit.kind === "log") {
      link.textContent = prefix + (hit.node_id || "?").slice(0, 8) + "/" + hit.file;
      link.title = "open " + hit.file + " at line " + hit.line + " (node " + hit.node_id + ")";
      where.append(link, ":", el("span", "ln", String(hit.line)), ": ");
    } else {
      where.append(el("span", "kind", hit.kind.replace("_", " ")), " ");
      const who = hit.task_name || hit.actor_name || hit.job_id || "";
      const id = hit.task_id || hit.actor_id || "";
      link.textContent = prefix + who + (id ? " (" + id.slice(0, 12) + ")" : "");
      where.append(link, ": ");
    }
    li.append(where, el("span", "hit-msg"));
    li.lastChild.append(highlighted(hit.message, hit.match));
    const meta = [when(hit.time), hit.level, hit.task_name && hit.kind === "log" ? "task " + hit.task_name : null,
                  hit.actor_name && hit.kind === "log" ? "actor " + hit.actor_name : null].filter(Boolean);
    li.append(el("span", "hit-meta", meta.join(" \u00b7 ")));
    if (hit.kind === "log") {
      const toggle = el("button", "ctx-toggle", "context");
      toggle.type = "button";
      toggle.addEventListener("click", () => toggleContext(li, hit, toggle));
      li.append(toggle);
    }
    return li;
  }

  async function toggleContext(li, hit, toggle, wider) {
    let box = li.querySelector(".context");
    if (box && !wider) { box.remove(); toggle.textContent = "context"; return; }
    const around = wider || 5;
    const params = new URLSearchParams({ node_id: hit.node_id, file: hit.file, line: hit.line, before: around, after: around });
    toggle.textContent = "loading\u2026";
    try {
      const ctx = await getJSON("/api/v1/sessions/" + encodeURIComponent(hit.session) + "/logs/context?" + params);
      const fresh = el("div", "context");
      for (const line of ctx.lines) {
        const row = el("div", line.line === hit.line ? "at" : "");
        row.append(el("span", "ln", String(line.line)), " ");
        row.append(line.line === hit.line ? highlighted(line.message, hit.match) : line.message);
        fresh.append(row);
      }
      const wide = el("button", "ctx-toggle", "more context");
      wide.type = "button";
      wide.addEventListener("click", () => toggleContext(li, hit, toggle, around * 4));
      fresh.append(wide);
      if (box) box.replaceWith(fresh); else li.append(fresh);
      toggle.textContent = "hide context";
    } catch (e) {
      toggle.textContent = "context (" + e.message + ")";
    }
  }

  function renderFacets(facets) {
    const aside = document.getElementById("facets");
    aside.replaceChildren();
    for (const [name, label] of Object.entries(FACET_NAMES)) {
      const values = Object.entries((facets || {})[name] || {}).sort((a, b) => b[1] - a[1]);
      if (!values.length) continue;
      aside.append(el("h3", "", label));
      const ul = el("ul");
      ul.dataset.facet = name;
      for (const [value, n] of values) {
        const li = el("li");
        const a = el("a", "", name === "node_id" ? value.slice(0, 12) : value);
        a.href = "#";
        a.title = "only " + name + " = " + value;
        a.addEventListener("click", (ev) => { ev.preventDefault(); addFilter(name, value); });
        li.append(a, el("span", "", String(n)));
        ul.append(li);
      }
      aside.append(ul);
    }
  }

  function renderWarnings(warnings) {
    const box = document.getElementById("search-warnings");
    box.replaceChildren(...(warnings || []).map((w) => el("p", "", w)));
  }

  async function chart() {
    const box = document.getElementById("search-chart");
    let data;
    try {
      data = await getJSON(API + "/histogram?" + apiParams({ buckets: 60 }));
    } catch (e) {
      return; // the hits are what matter; a chart that cannot load stays hidden
    }
    const buckets = Array.isArray(data) ? data : data.buckets || [];
    const pairs = buckets.map((b) => Array.isArray(b) ? b : [b.start ?? b.time, b.count]);
    // No bucket with a hit: the hits carry no time (raw stdout/stderr lines), or there are none; no chart then.
    if (!pairs.some((p) => p[1] > 0) || typeof uPlot === "undefined") return;
    box.replaceChildren(); // drawn again when a partial answer completes
    box.hidden = false;
    const xs = pairs.map((p) => p[0]), ys = pairs.map((p) => p[1]);
    const width = box.clientWidth || 800;
    new uPlot({
      width, height: 120, legend: { show: false }, cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { size: 50 }],
      series: [{}, { label: "hits", fill: "rgba(176,0,0,0.35)", stroke: "#b00", points: { show: false },
                     paths: uPlot.paths.bars({ size: [0.9] }) }],
      hooks: {
        // Dragging across the chart narrows the search to that time range (kept in the URL, like every filter).
        setSelect: [(u) => {
          if (u.select.width < 3) return;
          const from = u.posToVal(u.select.left, "x"), to = u.posToVal(u.select.left + u.select.width, "x");
          form.elements.since.value = String(Math.floor(from));
          form.elements.until.value = String(Math.ceil(to));
          form.requestSubmit();
        }],
      },
    }, [xs, ys], box);
    box.dataset.state = "drawn";
  }

  // A partial answer (SLS still scanning, sessions whose tables are still being built): shown as it is, then asked
  // again with backoff (0.5 s doubling to 8 s) until complete, at most MAX_RETRIES times, unless the reader paged on.
  function retryDelay(attempt) { return 500 * 2 ** Math.min(attempt, 4); }

  function partialText(answer, attempt) {
    const why = answer.pending_sessions > 0
      ? answer.pending_sessions + " session(s) still being indexed"
      : "the backend had not finished";
    if (attempt >= MAX_RETRIES) return " \u2014 partial: " + why + "; reload the page to ask again";
    return " \u2014 partial: " + why + "; asking again in " + (retryDelay(attempt) / 1000) + " s";
  }

  async function search(cursor, attempt) {
    attempt = attempt || 0;
    try {
      const params = apiParams({ limit: PAGE });
      if (cursor) params.set("cursor", cursor);
      if (!attempt) setStatus("Searching\u2026", "busy");
      const answer = await getJSON(API + "?" + params);
      if (!cursor) { hitsList.replaceChildren(); shown = 0; renderFacets(answer.facets); renderWarnings(answer.warnings); }
      for (const hit of answer.hits) hitsList.append(renderHit(hit));
      shown += answer.hits.length;
      nextCursor = answer.next_cursor;
      more.hidden = !nextCursor;
      const total = answer.total === null || answer.total === undefined ? "" : " of " + answer.total;
      const secs = ((performance.now() - started) / 1000).toFixed(2);
      const where = typeof answer.sessions === "number" ? " in " + answer.sessions + " session(s)" : "";
      setStatus(shown + total + " hits" + where + " (" + answer.backend + ", " + secs + " s)" +
                (answer.complete ? "" : partialText(answer, attempt)), answer.complete ? "" : "partial");
      status.dataset.state = answer.complete || attempt >= MAX_RETRIES ? "done" : "partial";
      if (!answer.complete && !cursor && attempt < MAX_RETRIES) {
        const asked = generation;
        setTimeout(() => {
          if (asked !== generation) return; // the reader asked for more pages meanwhile: keep what they see
          search(null, attempt + 1);
          chart();
        }, retryDelay(attempt));
      }
    } catch (e) {
      showError(e);
      status.dataset.state = "error";
    }
  }

  more.addEventListener("click", () => { generation += 1; started = performance.now(); search(nextCursor); });

  const initial = stateParams();
  initial.delete("mode");
  if ([...initial.keys()].length) {
    started = performance.now();
    search(null);
    chart();
  }
})();
