// Meridian's dashboard (served by the admin API, embedded in the binary; docs/dashboard.md).
// It draws the document of /v1/dashboard/events (server-sent events, pushed on every snapshot change and
// every second) and writes only through the admin API's own endpoints, so every change passes the same
// validation, safety checks and `force` semantics as the CLI's.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac", "#2f4b7c", "#a05195"];
const $ = (id) => document.getElementById(id);

let map = null;          // data/map-eu-na.json
let state = null;        // the last state document
let lastRevision = null; // the revision the audit log and drill history were read at
let lastActive = null;   // and the active drills then
const colour = {};       // region id -> colour

function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || SVG_TAGS.has(tag) ? SVG : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
const SVG_TAGS = new Set(["g", "path", "circle", "text", "title", "rect", "line"]);

function html(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function project(lat, lon) {
  const p = map.projection;
  return [(lon - p.lon_min) * p.x_per_lon, (p.lat_max - lat) * p.y_per_lat];
}

function fmtTime(ms) {
  if (!ms) return "";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function currentService() {
  return $("service").value || (state && state.services[0] && state.services[0].name);
}

function regionName(id) {
  const r = state && state.regions.find((x) => x.id === id);
  return r ? r.name + " (" + id + ")" : id;
}

// ---------------------------------------------------------------------------------------------------
// The map

function drawCountries() {
  const svg = $("map");
  svg.setAttribute("viewBox", "0 0 " + map.width + " " + map.height);
  const g = el("g", { id: "countries" });
  for (const c of map.countries) {
    const p = el("path", { d: c.d, class: "country", "data-cc": c.cc });
    p.appendChild(el("title", {}, c.name));
    p.addEventListener("mouseenter", () => showCountry(c));
    g.appendChild(p);
  }
  svg.appendChild(g);
  svg.appendChild(el("g", { id: "markers" }));
}

function countrySteering(cc) {
  const svc = state && state.steering.services.find((s) => s.name === currentService());
  return svc ? svc.countries[cc] : null;
}

function paintCountries() {
  for (const p of document.querySelectorAll("#countries path")) {
    const cc = p.getAttribute("data-cc");
    const s = countrySteering(cc);
    p.classList.remove("moved", "fenced", "noanswer");
    const title = p.querySelector("title");
    const name = map.countries.find((c) => c.cc === cc).name;
    if (!s) {
      p.style.fill = "";
      title.textContent = name;
      continue;
    }
    const first = s.regions[0];
    // A style property, not the fill attribute: the style sheet's default fill would win over that.
    p.style.fill = first ? colour[first] || "#ccc" : "";
    if (!first) p.classList.add("noanswer");
    const moved = (s.regions[0] || null) !== (s.usual[0] || null);
    if (moved) p.classList.add("moved");
    if (s.fence.length) p.classList.add("fenced");
    let t = name + " → " + (first ? s.regions.join(", ") : "no answer") + (s.mode !== "normal" ? " (" + s.mode + ")" : "");
    if (moved) t += "\nusually " + (s.usual.join(", ") || "no answer");
    if (s.fence.length) t += "\nresidency: " + s.fence.join(", ");
    if (s.by_hash) t += "\n(weighted: clients are split; one draw shown)";
    title.textContent = t;
    p.setAttribute("data-region", first || "");
  }
}

function showCountry(c) {
  const s = countrySteering(c.cc);
  const d = $("details");
  d.replaceChildren(html("h3", c.name + " (" + c.cc + ")"));
  if (!s) return;
  d.appendChild(html("p", "Clients (at its population centre) go to: " + (s.regions.map(regionName).join(", ") || "nowhere: no answer")));
  if (s.mode !== "normal") d.appendChild(html("p", "mode: " + s.mode, { class: "bad-text" }));
  if ((s.regions[0] || null) !== (s.usual[0] || null)) d.appendChild(html("p", "Moved: usually " + (s.usual.map(regionName).join(", ") || "no answer"), { class: "bad-text" }));
  if (s.fence.length) d.appendChild(html("p", "Residency: " + s.fence.join(", ") + " — only regions of the rule's jurisdiction may serve it."));
}

// Redrawn only when what they show changed, so that a pointer or a click is not lost to an update.
const drawn = { markers: null, table: null, legend: null };

function regionsKey() {
  return JSON.stringify(state.regions.map((r) => [r.id, r.health.state, r.health.stale, r.health.held_by_panic,
    r.health.vantages.map((v) => [v.vantage, v.healthy, v.fresh, v.detail]), r.drained, r.weight, r.in_flight,
    r.effective_capacity, r.excluded, r.drills.map((d) => [d.id, d.mode, d.active, fmtDuration(d.remaining_ms)])]));
}

function drawRegions() {
  const key = regionsKey();
  if (drawn.markers === key) return;
  drawn.markers = key;
  const g = $("markers");
  g.replaceChildren();
  for (const r of state.regions) {
    const loc = state.locations[r.id];
    if (!loc) continue;
    const [x, y] = project(loc.lat, loc.lon);
    const active = r.drills.find((d) => d.active);
    const classes = ["region", r.health.state];
    if (r.health.stale) classes.push("stale");
    if (r.drained) classes.push("drained");
    if (active) classes.push("drilled");
    const m = el("g", { class: classes.join(" "), "data-region": r.id, transform: "translate(" + x + "," + y + ")" });
    if (active) {
      m.setAttribute("data-drill", active.id);
      m.appendChild(el("circle", { class: "drill", r: 12 }));
    }
    m.appendChild(el("circle", { class: "core", r: 7 }));
    const dot = el("circle", { r: 3 });
    dot.style.fill = colour[r.id];
    m.appendChild(dot);
    const util = loadFraction(r);
    m.appendChild(el("rect", { class: "load-bg", x: -10, y: 9, width: 20, height: 3 }));
    m.appendChild(el("rect", { class: "load" + (util > 0.8 ? " high" : ""), x: -10, y: 9, width: 20 * util, height: 3 }));
    const label = r.id + (active ? " drill " + active.mode : "") + (r.drained ? " drained" : "") + (r.weight !== r.configured_weight ? " w" + r.weight : "");
    m.appendChild(el("text", { x: 10, y: -6 }, label));
    m.appendChild(el("title", {}, regionTooltip(r)));
    m.addEventListener("mouseenter", () => showRegion(r.id));
    g.appendChild(m);
  }
}

// The load bar's fill, 0 to 1: in flight over effective capacity; full when a region with no capacity
// left (a capacity=0 drill) has anything in flight; empty with no load report.
function loadFraction(r) {
  if (r.in_flight === null || r.in_flight === undefined) return 0;
  if (r.effective_capacity > 0) return Math.min(1, r.in_flight / r.effective_capacity);
  return r.in_flight > 0 ? 1 : 0;
}

function loadText(r) {
  const inflight = r.in_flight === null || r.in_flight === undefined ? "no report" : r.in_flight;
  return inflight + " / " + r.effective_capacity + (r.effective_capacity !== r.capacity ? " (of " + r.capacity + ")" : "");
}

function regionTooltip(r) {
  const lines = [r.name + " (" + r.id + "): " + r.health.state + (r.health.stale ? " (stale)" : "")];
  for (const v of r.health.vantages) lines.push("  " + v.vantage + ": " + (v.healthy ? "healthy" : "unhealthy") + (v.fresh ? "" : " (stale)") + (v.detail ? " — " + v.detail : ""));
  lines.push("load " + loadText(r), "weight " + r.weight);
  if (r.excluded) lines.push("gets no clients: " + r.excluded);
  return lines.join("\n");
}

function showRegion(id) {
  const r = state.regions.find((x) => x.id === id);
  if (!r) return;
  const d = $("details");
  d.replaceChildren(html("h3", r.name + " (" + r.id + ")"));
  d.appendChild(html("p", "health: " + r.health.state + (r.health.stale ? " (stale)" : "") + (r.health.held_by_panic ? " (held by panic threshold)" : "")));
  const ul = html("ul");
  for (const v of r.health.vantages) ul.appendChild(html("li", v.vantage + ": " + (v.healthy ? "healthy" : "unhealthy") + (v.fresh ? "" : " (stale)") + (v.detail ? " — " + v.detail : "")));
  if (!r.health.vantages.length) ul.appendChild(html("li", r.health.probed ? "no prober opinion yet" : "not probed"));
  d.appendChild(ul);
  d.appendChild(html("p", "load: " + loadText(r)));
  d.appendChild(html("p", "weight: " + r.weight + (r.weight_override ? " (override by " + r.weight_override.author + ": " + r.weight_override.reason + ")" : "")));
  if (r.drained) d.appendChild(html("p", "drained by " + r.drained.author + ": " + r.drained.reason, { class: "bad-text" }));
  for (const dr of r.drills) d.appendChild(html("p", "drill " + dr.id + " (" + dr.mode + "), " + fmtDuration(dr.remaining_ms) + " left", { class: "bad-text" }));
  if (r.excluded) d.appendChild(html("p", "gets no clients: " + r.excluded, { class: "bad-text" }));
}

// The legend: the regions' colours and the residency rules, redrawn when the configuration changes them.
function drawLegend() {
  const key = JSON.stringify([state.regions.map((r) => [r.id, r.name]), state.steering.fences]);
  if (drawn.legend === key) return;
  drawn.legend = key;
  const l = $("legend");
  l.replaceChildren();
  for (const r of state.regions) {
    const s = html("span");
    s.appendChild(html("span", "", { class: "swatch" }));
    s.firstChild.style.background = colour[r.id];
    s.appendChild(document.createTextNode(r.name + " (" + r.id + ")"));
    l.appendChild(s);
  }
  for (const f of state.steering.fences) {
    l.appendChild(html("span", "▭ residency " + f.rule + " (" + f.written_as.join(", ") + "): only " + (f.regions.join(", ") || "no region") + " [" + f.jurisdiction + "]", { class: "fence", "data-rule": f.rule }));
  }
  l.appendChild(html("span", "dashed red border: clients moved from their usual region", { class: "muted" }));
}

// ---------------------------------------------------------------------------------------------------
// Tables

function drawRegionTable() {
  const key = regionsKey();
  if (drawn.table === key) return;
  drawn.table = key;
  const tb = document.querySelector("#regions tbody");
  tb.replaceChildren();
  for (const r of state.regions) {
    const active = r.drills.find((d) => d.active);
    const tr = html("tr", undefined, { "data-region": r.id });
    if (r.health.state === "down") tr.classList.add("down");
    if (active) tr.classList.add("drilled");
    tr.appendChild(html("td", r.name + " (" + r.id + ")"));
    tr.appendChild(html("td", r.health.state + (r.health.stale ? " (stale)" : ""), { class: r.health.state === "down" ? "bad-text" : "" }));
    tr.appendChild(html("td", r.health.vantages.map((v) => v.vantage + (v.healthy ? " ✓" : " ✗")).join(" ")));
    tr.appendChild(html("td", loadText(r)));
    tr.appendChild(html("td", String(r.weight)));
    tr.appendChild(html("td", r.drained ? "drained: " + r.drained.reason : ""));
    tr.appendChild(html("td", active ? active.mode + " (" + fmtDuration(active.remaining_ms) + " left)" : ""));
    const td = html("td");
    const b = html("button", r.drained ? "Undrain…" : "Drain…", { type: "button", class: "drain-button" });
    b.addEventListener("click", () => (r.drained ? undrain(r) : drain(r)));
    td.appendChild(b);
    if (active) {
      const s = html("button", "Stop drill…", { type: "button" });
      s.addEventListener("click", () => stopDrill(active));
      td.appendChild(s);
    }
    tr.appendChild(td);
    tb.appendChild(tr);
  }
}

// The drill history: drills the store still holds (active, or expired and not yet cleaned up) and every
// drill the audit log remembers (a stopped drill's document is removed; its audit records stay).
function drillHistory(drills, records) {
  const stops = new Map();
  for (const a of records) {
    const m = /^drill stop ([^\s:]+)/.exec(a.what || "");
    if (m && !stops.has(m[1])) stops.set(m[1], a.at_ms);
  }
  const rows = new Map();
  for (const d of drills) {
    const stopped = !d.active && stops.get(d.id);
    rows.set(d.id, { id: d.id, region: d.region, mode: d.mode, started: d.started_at_ms, author: d.author, reason: d.reason,
      active: d.active, ends: d.active ? "in " + fmtDuration(d.remaining_ms) : stopped ? "stopped " + fmtTime(stopped) : fmtTime(d.expires_at_ms), drill: d });
  }
  for (const a of records) {
    const m = /^drill start (\S+)/.exec(a.what || "");
    if (!m || rows.has(m[1]) || !a.after) continue;
    const mode = a.after.mode ? a.after.mode.kind + (a.after.mode.percent !== undefined ? "=" + a.after.mode.percent : "") : "";
    const stopped = stops.get(m[1]);
    rows.set(m[1], { id: m[1], region: a.after.region, mode, started: a.after.started_at_ms || a.at_ms, author: a.after.author || a.who,
      reason: a.after.reason || "", active: false, ends: stopped ? "stopped " + fmtTime(stopped) : fmtTime(a.after.expires_at_ms) });
  }
  return [...rows.values()].sort((a, b) => b.started - a.started);
}

async function refreshHistory() {
  try {
    const [drills, audit] = await Promise.all([api("GET", "/v1/drills?all=true"), api("GET", "/v1/audit?limit=100")]);
    const tb = document.querySelector("#drills tbody");
    tb.replaceChildren();
    for (const d of drillHistory(drills.drills, audit.records)) {
      const tr = html("tr", undefined, { "data-drill": d.id });
      if (d.active) tr.classList.add("drilled");
      for (const t of [d.id, d.region, d.mode, fmtTime(d.started), d.ends, d.author, d.reason]) tr.appendChild(html("td", t));
      const td = html("td");
      if (d.active) {
        const b = html("button", "Stop…", { type: "button" });
        b.addEventListener("click", () => stopDrill(d.drill));
        td.appendChild(b);
      }
      tr.appendChild(td);
      tb.appendChild(tr);
    }
    const ab = document.querySelector("#audit tbody");
    ab.replaceChildren();
    for (const a of audit.records.slice(0, 30)) {
      const tr = html("tr");
      for (const t of [fmtTime(a.at_ms), a.who || "", a.what || a.error || ""]) tr.appendChild(html("td", t));
      ab.appendChild(tr);
    }
  } catch (e) {
    // The store may be unreachable: the audit log is read from it. Say so; the map keeps updating.
    const ab = document.querySelector("#audit tbody");
    ab.replaceChildren(html("tr"));
    ab.firstChild.appendChild(html("td", "cannot read the audit log: " + e.message, { colspan: 3, class: "error" }));
  }
}

// ---------------------------------------------------------------------------------------------------
// The state document

function fillSelect(select, values, keep) {
  const before = select.value;
  const same = select.options.length === values.length && values.every((v, i) => select.options[i].value === v[0]);
  if (!same) {
    select.replaceChildren(...values.map(([v, t]) => html("option", t, { value: v })));
    if (keep && values.some((v) => v[0] === before)) select.value = before;
  }
}

function render(doc) {
  state = doc;
  state.regions.forEach((r, i) => { colour[r.id] = colour[r.id] || PALETTE[i % PALETTE.length]; });
  $("node").textContent = doc.node + " · " + doc.store;
  const conn = $("conn");
  const stale = doc.staleness_ms > 3000;
  conn.textContent = doc.connected ? (stale ? "store: stale " + fmtDuration(doc.staleness_ms) : "store: connected") : "store: disconnected for " + fmtDuration(doc.staleness_ms);
  conn.className = "badge " + (doc.connected && !stale ? "ok" : "bad");
  $("revision").textContent = "revision " + doc.revision + (doc.panic ? " · PANIC: health ignored" : "");
  const services = doc.services.map((s) => [s.name, s.name + " (" + s.hostname + ")"]);
  fillSelect($("service"), services, true);
  fillSelect($("explain-service"), services, true);
  fillSelect($("drill-region"), doc.regions.map((r) => [r.id, r.name + " (" + r.id + ")"]), true);
  $("map").setAttribute("data-revision", String(doc.revision));
  drawRegions();
  paintCountries();
  drawRegionTable();
  drawLegend();
  // The history changes with the store, and when a drill expires (which changes nothing in the store).
  const active = doc.regions.flatMap((r) => r.drills.filter((d) => d.active).map((d) => d.id)).join(" ");
  if (doc.revision !== lastRevision || active !== lastActive) {
    lastRevision = doc.revision;
    lastActive = active;
    refreshHistory();
  }
  const problems = doc.problems || [];
  const b = $("banner");
  b.hidden = problems.length === 0;
  b.textContent = problems.length ? "Skipped in the store: " + problems.join("; ") : "";
}

function connect() {
  const es = new EventSource("/v1/dashboard/events");
  es.addEventListener("state", (ev) => render(JSON.parse(ev.data)));
  es.addEventListener("error", (ev) => {
    if (ev.data) {
      const b = $("banner");
      b.hidden = false;
      b.textContent = JSON.parse(ev.data).message;
      return;
    }
    const c = $("conn");
    c.textContent = "dashboard: reconnecting…";
    c.className = "badge bad";
    if (es.readyState === EventSource.CLOSED) {
      // Closed for good: the session expired (401) or the node is gone. Back to the login form.
      setTimeout(() => location.reload(), 3000);
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Writes, through the admin API

async function api(method, path, body) {
  const headers = { "x-meridian-dashboard": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  const text = await r.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch (_) { doc = null; }
  if (!r.ok) {
    const err = new Error((doc && doc.error && doc.error.message) || ("HTTP " + r.status));
    err.status = r.status;
    err.doc = doc;
    throw err;
  }
  return doc;
}

function author() {
  const a = $("author").value.trim();
  if (a) localStorage.setItem("meridian-author", a);
  return a || "dashboard";
}

// Asks for confirmation (and a reason when `needsReason`), sends `send(reason, force)`; a safety refusal
// (422) is shown with its violations and may be repeated with force, as `--force` on the CLI.
function confirmThen(title, text, needsReason, send) {
  const dlg = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-error").textContent = "";
  $("confirm-reason-label").hidden = !needsReason;
  $("confirm-reason").value = "";
  $("confirm-force").hidden = true;
  $("confirm-ok").hidden = false;
  const attempt = async (force) => {
    const reason = $("confirm-reason").value.trim();
    if (needsReason && !reason) {
      $("confirm-error").textContent = "A reason is required (it goes to the audit log).";
      return;
    }
    try {
      await send(reason, force);
      dlg.close();
    } catch (e) {
      let msg = e.message;
      if (e.status === 422) {
        msg += "\nNothing was changed. Force overrides the safety check (recorded in the audit log).";
        $("confirm-force").hidden = false;
        $("confirm-ok").hidden = true;
      } else {
        msg += "\nNothing was changed.";
      }
      $("confirm-error").textContent = msg;
    }
  };
  $("confirm-ok").onclick = (ev) => { ev.preventDefault(); attempt(false); };
  $("confirm-force").onclick = (ev) => { ev.preventDefault(); attempt(true); };
  $("confirm-cancel").onclick = (ev) => { ev.preventDefault(); dlg.close(); };
  dlg.showModal();
}

function drain(r) {
  confirmThen("Drain " + r.name + "?", "New clients stop going to " + r.id + "; it stays drained until undrained.", true,
    (reason, force) => api("PUT", "/v1/regions/" + encodeURIComponent(r.id) + "/drain", { reason, author: author(), force, expect_revision: state.revision }));
}

function undrain(r) {
  confirmThen("Undrain " + r.name + "?", "Clients may go to " + r.id + " again.", false,
    (reason, force) => api("DELETE", "/v1/regions/" + encodeURIComponent(r.id) + "/drain", { reason: reason || "undrained from the dashboard", author: author(), force }));
}

function stopDrill(d) {
  confirmThen("Stop drill " + d.id + "?", "Region " + d.region + " returns to normal now.", false,
    (reason, force) => api("DELETE", "/v1/drills/" + encodeURIComponent(d.id), { reason: reason || "stopped from the dashboard", author: author(), force }));
}

$("drill-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const region = $("drill-region").value;
  let mode = $("drill-mode").value;
  const minutes = number($("drill-minutes").value);
  const reason = $("drill-reason").value.trim();
  if (!Number.isFinite(minutes) || minutes < 1 || minutes > 4320) {
    alertForm("minutes: from 1 to 4320 (72 hours)");
    return;
  }
  if (mode === "capacity") {
    const pct = number($("drill-capacity").value);
    if (!Number.isInteger(pct) || pct < 0 || pct > 100) {
      alertForm("capacity %: a whole number from 0 to 100");
      return;
    }
    mode = "capacity=" + pct;
  }
  if (!reason) {
    alertForm("reason: required (it goes to the audit log)");
    return;
  }
  confirmThen("Start a " + mode + " drill on " + regionName(region) + "?", "For " + minutes + " min: " + reason, false,
    (_r, force) => api("POST", "/v1/drills", { region, mode, duration_ms: Math.round(minutes * 60000), reason, author: author(), force }));
});

// A field's number; NaN when empty (Number("") is 0, which would pass for a capacity of 0 %).
function number(text) {
  return text.trim() === "" ? NaN : Number(text);
}

function alertForm(msg) {
  confirmThen("Cannot start the drill", msg + ". Nothing was changed.", false, async () => {});
  $("confirm-ok").hidden = true;
}

$("explain-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("explain-out");
  const err = $("explain-error");
  err.textContent = "";
  const client = $("explain-client").value.trim();
  if (!client) {
    err.textContent = "Type a client IP address or subnet.";
    return;
  }
  try {
    const q = "service=" + encodeURIComponent($("explain-service").value) + "&client=" + encodeURIComponent(client);
    const doc = await api("GET", "/v1/explain?" + q);
    out.textContent = doc.text;
    out.setAttribute("data-client", client);
  } catch (e) {
    out.textContent = "";
    err.textContent = e.message;
  }
});

$("service").addEventListener("change", () => { if (state) paintCountries(); });
$("logout").addEventListener("click", async () => {
  await fetch("/dashboard/logout", { method: "POST" });
  location.reload();
});

(async () => {
  $("author").value = localStorage.getItem("meridian-author") || "";
  const r = await fetch("/dashboard/map.json");
  map = await r.json();
  drawCountries();
  connect();
})();
