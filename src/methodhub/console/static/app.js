// The console: a hash-routed single page (#/overview, #/devices, #/device/ID, #/calls, #/jobs).
// Plain ES modules, no build step, no dependencies. Text goes into the DOM as text, never as HTML.
import { API, Hub, HubError } from "/console/hub.js";
import { buckets, quantile } from "/console/metrics.js";

const main = document.getElementById("main");
let hub = Hub.restore();
const online = new Map(); // device key → connected (from the event stream and GET /devices)
const seen = new Map(); // device key → ms of the last connect/disconnect event (the hub's clock)
const heard = new Map(); // device key → when this page received that event (this browser's clock)
let timers = [];
let onConnection = null; // the current page's listener for connection events

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
const show = (...nodes) => main.replaceChildren(...nodes);
const every = (ms, fn) => { fn(); timers.push(setInterval(fn, ms)); };
const when = (t) => (t && !t.startsWith("0001") ? new Date(t).toLocaleString() : "—");
const badge = (state) => h("span", { class: `state ${String(state).toLowerCase()}` }, state);
const errorText = (e) => h("p", { class: "error", role: "alert" }, e instanceof HubError ? `${e.status}: ${e.message}` : String(e));
const readOnlyNote = () => h("p", { class: "muted" }, `Policy ${hub.policy} has no ServiceConnect: this page is read-only.`);

// -- sign in ---------------------------------------------------------------------------------------
function signInPage(message) {
  const text = h("textarea", { id: "connection-string", rows: 3, placeholder: "HostName=...;SharedAccessKeyName=iothubowner;SharedAccessKey=...", autocomplete: "off", spellcheck: "false" });
  const status = h("p", { class: "error", role: "alert" }, message || "");
  const form = h("form", { id: "signin", onsubmit: async (ev) => {
    ev.preventDefault();
    status.textContent = "";
    try { hub = await Hub.signIn(text.value); start(); } catch (e) { status.textContent = e.message; }
  } }, h("p", {}, "Paste a service connection string (what \"methodhub connection-string\" prints). It stays in this tab's sessionStorage; the page signs short-lived SAS tokens with it."), text, h("p", {}, h("button", { type: "submit" }, "Sign in")), status);
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("who").textContent = "";
  show(h("h1", {}, "Sign in"), h("div", { class: "card" }, form));
}

// -- overview --------------------------------------------------------------------------------------
function parseMetrics(text) {
  const values = new Map();
  const histograms = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE") && line.trim().endsWith("histogram")) histograms.push(line.split(" ")[2]);
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m) values.set(m[1] + (m[2] || ""), Number(m[3]));
  }
  return { values, histograms };
}
const sumOf = (values, pattern) => [...values].filter(([k]) => pattern.test(k)).reduce((a, [, v]) => a + v, 0);

function svg(coords) {
  const ns = "http://www.w3.org/2000/svg";
  const el = document.createElementNS(ns, "svg");
  el.setAttribute("class", "chart"); el.setAttribute("viewBox", "0 0 300 80"); el.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", coords);
  el.append(line);
  return el;
}

const ms = (seconds) => (seconds === null ? "—" : (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1));
const card = (label, value, id, compact = false) => h("div", { class: "card" }, h("div", { class: "muted" }, label), h("div", { class: compact ? "big compact" : "big", ...(id ? { id } : {}) }, value));
const HOUR = 3600 * 1000;

function overviewPage() {
  const cards = h("div", { class: "cards" });
  const rateChart = h("div");
  const latencyChart = h("div");
  const notes = h("div");
  show(h("h1", {}, "Overview"), cards,
    h("h2", {}, "Calls per second (this node, the last hour since the page opened)"), rateChart,
    h("h2", {}, "Call latency p99 (this node)"), latencyChart, notes);
  const points = []; // {at, calls, buckets, rate, p99}, one per scrape, the last hour
  every(2000, async () => {
    try {
      const [devices, metricsText] = await Promise.all([
        hub.request("GET", `/devices?${API}`),
        fetch("/metrics").then((r) => (r.ok ? r.text() : "")),
      ]);
      const { values } = parseMetrics(metricsText);
      const now = Date.now();
      const calls = sumOf(values, /^methodhub_calls_total/);
      const latency = buckets(values, "methodhub_call_duration_seconds");
      const prev = points[points.length - 1];
      const rate = prev ? Math.max(0, (calls - prev.calls) / ((now - prev.at) / 1000)) : 0;
      const p99 = prev ? quantile(0.99, prev.buckets, latency) : null;
      points.push({ at: now, calls, buckets: latency, rate, p99 });
      while (points.length > 2 && now - points[0].at > HOUR) points.shift();
      const first = points[0];
      const window = (q) => (points.length > 1 ? quantile(q, first.buckets, latency) : null);
      const errors = [...values].filter(([k, v]) => /^methodhub_calls_total/.test(k) && /outcome=/.test(k) && !/outcome="(ok|success|succeeded)"/.test(k) && v > 0);
      const up = devices.filter((d) => d.connectionState === "Connected").length;
      cards.replaceChildren(
        card("Devices online", `${up} / ${devices.length}`, "online-count"),
        card("Calls/s", rate.toFixed(1), "call-rate"),
        card("Calls (total, this node)", String(calls)),
        card("Latency p50 / p95 / p99 (last hour)", `${[0.5, 0.95, 0.99].map((q) => ms(window(q))).join(" / ")} ms`, "latency", true),
        h("div", { class: "card" }, h("div", { class: "muted" }, "Errors by code"), errors.length
          ? h("div", { id: "errors" }, errors.map(([k, v]) => h("div", { class: "error-code" }, `${(k.match(/outcome="([^"]*)"/) || [])[1]}: ${v}`)))
          : h("div", { class: "big", id: "errors" }, "0")),
      );
      const chart = (series) => { const top = Math.max(1e-9, ...series); return svg(series.map((v, i) => `${(i / Math.max(1, series.length - 1)) * 300},${78 - (v / top) * 74}`).join(" ")); };
      rateChart.replaceChildren(chart(points.map((p) => p.rate)));
      latencyChart.replaceChildren(chart(points.map((p) => p.p99 || 0)));
      notes.replaceChildren(h("p", { class: "muted" }, "From this node's /metrics every 2 s (methodhub_calls_total, methodhub_call_duration_seconds); a cluster's figures are best read in Prometheus (docs/grafana-dashboard.json)."));
    } catch (e) { notes.replaceChildren(errorText(e)); }
  });
}

// -- devices ---------------------------------------------------------------------------------------
function devicesPage() {
  const search = h("input", { id: "device-search", type: "search", placeholder: "Search device id" });
  const body = h("tbody");
  const live = h("span", { class: "muted", id: "live" }, "connecting…");
  let devices = [];
  const render = () => {
    const q = search.value.trim().toLowerCase();
    body.replaceChildren(...devices.filter((d) => d.deviceId.toLowerCase().includes(q)).map((d) => {
      const on = online.has(d.deviceId) ? online.get(d.deviceId) : d.connectionState === "Connected";
      return h("tr", { "data-device": d.deviceId, "data-source": heard.has(d.deviceId) ? "event" : "poll" },
        h("td", {}, h("a", { href: `#/device/${encodeURIComponent(d.deviceId)}` }, d.deviceId)),
        h("td", {}, badge(on ? "online" : "offline")),
        h("td", {}, d.status),
        h("td", {}, seen.has(d.deviceId) ? new Date(seen.get(d.deviceId)).toLocaleString() : when(d.lastActivityTime)));
    }));
  };
  search.addEventListener("input", render);
  onConnection = render;
  show(h("h1", {}, "Devices"), h("div", { class: "row" }, search, live),
    h("table", { id: "devices" }, h("thead", {}, h("tr", {}, h("th", {}, "Device"), h("th", {}, "Connection"), h("th", {}, "Status"), h("th", {}, "Last activity"))), body));
  live.textContent = hub.source && hub.source.readyState === 1 ? "live" : "polling";
  every(5000, async () => {
    try {
      const asked = Date.now();
      devices = await hub.request("GET", `/devices?${API}`);
      // The list is cluster-wide; an event heard after we asked is newer than the list's answer.
      for (const d of devices) if (!(heard.get(d.deviceId) > asked)) online.set(d.deviceId, d.connectionState === "Connected");
      render();
    } catch (e) { body.replaceChildren(h("tr", {}, h("td", { colspan: 4 }, errorText(e)))); }
  });
}

function jsonEditor(id, initial = "null") {
  const area = h("textarea", { id, rows: 5, value: initial, spellcheck: "false" });
  const note = h("div", { class: "error", id: `${id}-error` });
  const check = () => {
    try { JSON.parse(area.value || "null"); area.classList.remove("invalid"); note.textContent = ""; return true; }
    catch (e) { area.classList.add("invalid"); note.textContent = `Not JSON: ${e.message}`; return false; }
  };
  area.addEventListener("input", check);
  return { area, note, check, value: () => JSON.parse(area.value || "null") };
}

function devicePage(id) {
  const title = h("h1", {}, "Device ", h("code", {}, id), " ", h("span", { id: "device-state" }));
  const twinBox = h("div", { class: "card" }, "Loading twin…");
  const callsBody = h("tbody", { id: "device-calls" });
  const result = h("div", { id: "invoke-result" });
  const method = h("input", { id: "method", value: "ping", placeholder: "method name" });
  const payload = jsonEditor("payload", "{}");
  const responseTimeout = h("input", { id: "response-timeout", type: "number", min: 5, max: 300, value: 30 });
  const connectTimeout = h("input", { id: "connect-timeout", type: "number", min: 0, max: 300, value: 0 });
  const canInvoke = hub.can("ServiceConnect");
  const invoke = h("button", { id: "invoke", onclick: () => send(false) }, "Invoke");
  const queue = h("button", { id: "queue", class: "secondary", onclick: () => send(true) }, "Queue it");
  const setState = () => {
    const on = online.get(id);
    document.getElementById("device-state").replaceChildren(badge(on ? "online" : "offline"));
  };
  onConnection = setState;

  async function send(queued) {
    if (!payload.check() || !method.value.trim()) { result.replaceChildren(errorText("Give a method name and a JSON payload.")); return; }
    invoke.disabled = queue.disabled = true;
    result.replaceChildren(h("p", { class: "muted" }, queued ? "Queuing…" : "Calling…"));
    try {
      if (queued) {
        const call = await hub.request("POST", "/calls", { deviceId: id, methodName: method.value.trim(), payload: payload.value(), responseTimeoutInSeconds: Number(responseTimeout.value) });
        result.replaceChildren(h("p", {}, "Queued: ", h("code", {}, call.callId), " ", badge(call.state), ". It is delivered when the device connects; see the list below."));
      } else {
        const body = { methodName: method.value.trim(), payload: payload.value(), responseTimeoutInSeconds: Number(responseTimeout.value), connectTimeoutInSeconds: Number(connectTimeout.value) };
        const answer = await hub.request("POST", `/twins/${encodeURIComponent(id)}/methods?${API}`, body);
        result.replaceChildren(h("p", {}, "Status ", h("strong", { id: "result-status" }, String(answer.status)), ` in ${Math.round(answer._elapsed)} ms`), h("pre", { id: "result-payload" }, JSON.stringify(answer.payload, null, 2)));
      }
    } catch (e) {
      result.replaceChildren(errorText(e), e instanceof HubError ? h("p", { class: "muted" }, `after ${Math.round(e.elapsed)} ms`) : "",
        e instanceof HubError && e.status === 404 && !queued ? h("p", {}, "The device is offline: queue the call and it runs when the device connects.") : "");
    } finally { invoke.disabled = queue.disabled = false; loadCalls(); }
  }

  async function loadTwin() {
    try {
      const twin = await hub.request("GET", `/twins/${encodeURIComponent(id)}?${API}`);
      const tags = jsonEditor("tags", JSON.stringify(twin.tags || {}, null, 2));
      const save = h("button", { id: "save-tags", onclick: async () => {
        if (!tags.check()) return;
        try { await hub.request("PATCH", `/twins/${encodeURIComponent(id)}?${API}`, { tags: tags.value() }, { "if-match": "*" }); saved.textContent = "Saved."; loadTwin(); }
        catch (e) { saved.replaceChildren(errorText(e)); }
      } }, "Save tags");
      const saved = h("span", { class: "muted", id: "tags-saved" });
      twinBox.replaceChildren(h("h2", {}, "Tags"), tags.area, tags.note, canInvoke ? h("div", { class: "row" }, save, saved) : null,
        h("h2", {}, "Twin"), h("pre", { id: "twin" }, JSON.stringify(twin, null, 2)));
    } catch (e) { twinBox.replaceChildren(h("h2", {}, "Twin"), errorText(e)); }
  }

  async function loadCalls() {
    try {
      const page = await hub.request("GET", `/calls?deviceId=${encodeURIComponent(id)}&limit=20`);
      callsBody.replaceChildren(...page.calls.map(callRow));
      if (!page.calls.length) callsBody.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No calls listed yet. GET /calls lists queued and job calls; calls invoked directly appear here once the hub records call history.")));
    } catch (e) { callsBody.replaceChildren(h("tr", {}, h("td", { colspan: 6 }, errorText(e)))); }
  }

  show(title,
    canInvoke ? h("div", { class: "card", id: "invoke-card" }, h("h2", {}, "Invoke by hand"),
      h("div", { class: "row" }, h("label", {}, "Method", method), h("label", {}, "Response timeout (s)", responseTimeout), h("label", {}, "Connect timeout (s)", connectTimeout)),
      h("label", { class: "muted" }, "Payload (JSON)"), payload.area, payload.note,
      h("div", { class: "row" }, invoke, queue), result) : readOnlyNote(),
    twinBox,
    h("h2", {}, "Recent calls"), h("table", {}, callsHead(), callsBody));
  setState();
  loadTwin();
  every(2000, loadCalls);
}

// -- calls -----------------------------------------------------------------------------------------
const callsHead = () => h("thead", {}, h("tr", {}, ["Created", "Device", "Method", "State", "Outcome", ""].map((t) => h("th", {}, t))));
function callRow(c) {
  const cancel = ["queued", "sent"].includes(c.state) && hub.can("ServiceConnect")
    ? h("button", { class: "secondary cancel", onclick: async () => { try { await hub.request("DELETE", `/calls/${encodeURIComponent(c.callId)}`); } catch (e) { alert(e.message); } } }, "Cancel")
    : "";
  const outcome = c.outcome ? `${c.outcome.status} ${JSON.stringify(c.outcome.payload)}` : c.error ? `${c.error.errorCode}: ${c.error.message}` : "";
  return h("tr", { "data-call": c.callId, "data-state": c.state },
    h("td", {}, when(c.createdTime)), h("td", {}, h("a", { href: `#/device/${encodeURIComponent(c.deviceId)}` }, c.deviceId + (c.moduleId ? `/${c.moduleId}` : ""))),
    h("td", {}, c.methodName), h("td", {}, badge(c.state)), h("td", {}, h("code", {}, outcome)), h("td", {}, cancel));
}

function callsPage() {
  const device = h("input", { id: "filter-device", placeholder: "device id" });
  const state = h("select", { id: "filter-state" }, ["", "queued", "sent", "succeeded", "failed", "expired", "cancelled"].map((s) => h("option", { value: s }, s || "any state")));
  const method = h("input", { id: "filter-method", placeholder: "method name" });
  const door = h("select", { id: "filter-door" }, ["", "azure", "aliyun", "native", "job"].map((s) => h("option", { value: s }, s || "any front door")));
  const code = h("input", { id: "filter-status", placeholder: "device status", inputmode: "numeric", size: 6 });
  const since = h("select", { id: "filter-since" }, [["", "any time"], ["300", "last 5 min"], ["3600", "last hour"], ["86400", "last day"]].map(([v, t]) => h("option", { value: v }, t)));
  const tail = h("input", { id: "tail", type: "checkbox", checked: true });
  const body = h("tbody", { id: "calls" });
  const status = h("span", { class: "muted" });
  const load = async () => {
    if (!tail.checked && body.childElementCount) return;
    const q = new URLSearchParams({ limit: "50" });
    if (device.value.trim()) q.set("deviceId", device.value.trim());
    if (state.value) q.set("state", state.value);
    if (method.value.trim()) q.set("methodName", method.value.trim());
    if (door.value) q.set("frontDoor", door.value);
    if (code.value.trim()) q.set("status", code.value.trim());
    if (since.value) q.set("since", new Date(Date.now() - 1000 * Number(since.value)).toISOString());
    try {
      const page = await hub.request("GET", `/calls?${q}`);
      body.replaceChildren(...page.calls.map(callRow));
      status.textContent = `${body.childElementCount} calls, updated ${new Date().toLocaleTimeString()}`;
    } catch (e) { body.replaceChildren(h("tr", {}, h("td", { colspan: 6 }, errorText(e)))); }
  };
  for (const el of [device, state, method, door, code, since]) el.addEventListener("change", () => { body.replaceChildren(); load(); });
  show(h("h1", {}, "Calls"), h("p", { class: "muted" }, "Queued and job calls, and every call the hub records (GET /calls), newest first."),
    h("div", { class: "row" }, h("label", {}, "Device", device), h("label", {}, "State", state), h("label", {}, "Method", method),
      h("label", {}, "Front door", door), h("label", {}, "Status", code), h("label", {}, "Since", since),
      h("label", {}, h("span", {}, tail, " live tail")), status),
    h("table", {}, callsHead(), body));
  every(2000, load);
}

// -- jobs ------------------------------------------------------------------------------------------
function progress(stats) {
  // Widths through the CSSOM: the console's CSP forbids inline style attributes.
  const n = Math.max(1, stats.deviceCount || 0);
  const bar = (cls, count) => { const el = h("span", { class: cls }); el.style.width = `${(100 * (count || 0)) / n}%`; return el; };
  return h("div", { class: "progress", role: "progressbar", "aria-valuenow": (stats.succeededCount || 0) + (stats.failedCount || 0), "aria-valuemax": stats.deviceCount || 0,
    title: `${stats.succeededCount || 0} succeeded, ${stats.failedCount || 0} failed of ${stats.deviceCount || 0}` },
    bar("ok", stats.succeededCount), bar("bad", stats.failedCount));
}

function jobsPage() {
  const body = h("tbody", { id: "jobs" });
  const detail = h("div", { id: "job-detail" });
  const condition = h("input", { id: "job-query", value: "*", size: 40, placeholder: "* or a WHERE condition, e.g. tags.site = 'a'" });
  const method = h("input", { id: "job-method", value: "ping" });
  const payload = jsonEditor("job-payload", "{}");
  const note = h("div", { id: "job-created" });
  const create = async () => {
    if (!payload.check()) return;
    const jobId = `console-${Date.now()}`;
    try {
      await hub.request("PUT", `/jobs/v2/${jobId}?${API}`, { jobId, type: "scheduleDeviceMethod", queryCondition: condition.value.trim() || "*",
        cloudToDeviceMethod: { methodName: method.value.trim(), payload: payload.value(), responseTimeoutInSeconds: 30 }, startTime: new Date().toISOString(), maxExecutionTimeInSeconds: 3600 });
      note.replaceChildren(h("p", {}, "Created job ", h("code", {}, jobId)));
      load(); openJob(jobId);
    } catch (e) { note.replaceChildren(errorText(e)); }
  };
  let opened = null;
  const openJob = (jobId) => { opened = jobId; showJob(); };
  const showJob = async () => {
    if (!opened) return;
    try {
      const job = await hub.request("GET", `/jobs/v2/${encodeURIComponent(opened)}?${API}`);
      const rows = await hub.request("POST", `/devices/query?${API}`, { query: `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${opened.replace(/'/g, "''")}'` });
      detail.replaceChildren(h("h2", {}, "Job ", h("code", {}, opened), " ", badge(job.status)), progress(job.deviceJobStatistics || {}),
        h("table", {}, h("thead", {}, h("tr", {}, ["Device", "Status", "Result"].map((t) => h("th", {}, t)))),
          h("tbody", { id: "job-devices" }, (rows || []).map((r) => h("tr", {}, h("td", {}, r.deviceId), h("td", {}, badge(r.status)),
            h("td", {}, h("code", {}, r.outcome ? JSON.stringify(r.outcome.deviceMethodResponse || r.outcome) : r.error ? `${r.error.code}: ${r.error.description}` : "")))))));
    } catch (e) { detail.replaceChildren(errorText(e)); }
  };
  const load = async () => {
    try {
      const page = await hub.request("GET", `/jobs/v2/query?${API}`);
      body.replaceChildren(...(page || []).map((j) => h("tr", { "data-job": j.jobId },
        h("td", {}, h("a", { href: "#/jobs", onclick: (ev) => { ev.preventDefault(); openJob(j.jobId); } }, j.jobId)),
        h("td", {}, j.type), h("td", {}, badge(j.status)), h("td", {}, progress(j.deviceJobStatistics || {})), h("td", {}, when(j.createdTime)))));
    } catch (e) { body.replaceChildren(h("tr", {}, h("td", { colspan: 5 }, errorText(e)))); }
  };
  show(h("h1", {}, "Jobs"),
    hub.can("ServiceConnect") ? h("div", { class: "card" }, h("h2", {}, "Invoke a method on every device a query selects"),
      h("div", { class: "row" }, h("label", {}, "Query condition", condition), h("label", {}, "Method", method)),
      h("label", { class: "muted" }, "Payload (JSON)"), payload.area, payload.note,
      h("div", { class: "row" }, h("button", { id: "create-job", onclick: create }, "Start job")), note) : readOnlyNote(),
    h("table", {}, h("thead", {}, h("tr", {}, ["Job", "Type", "Status", "Progress", "Created"].map((t) => h("th", {}, t)))), body), detail);
  every(2000, () => { load(); showJob(); });
}

// -- routing ---------------------------------------------------------------------------------------
function route() {
  for (const t of timers) clearInterval(t);
  timers = []; onConnection = null;
  if (!hub) return signInPage();
  const [, page, arg] = location.hash.split("/");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${page}`);
  if (page === "devices") devicesPage();
  else if (page === "device" && arg) devicePage(decodeURIComponent(arg));
  else if (page === "calls") callsPage();
  else if (page === "jobs") jobsPage();
  else overviewPage();
}

async function start() {
  try { await hub.loadSession(); } catch (e) { hub.signOut(); hub = null; return signInPage(e.message); }
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("who").textContent = `${hub.policy} @ ${hub.creds.host} (${hub.can("ServiceConnect") ? "read/write" : "read-only"})`;
  hub.events((kind, data) => {
    if (kind === "hello") for (const key of data.connected) online.set(key, true);
    else { online.set(data.target, data.connected); seen.set(data.target, data.at * 1000); heard.set(data.target, Date.now()); }
    if (onConnection) onConnection();
  }, (open) => { const live = document.getElementById("live"); if (live) live.textContent = open ? "live" : "reconnecting…"; });
  route();
}

window.addEventListener("hashchange", route);
document.getElementById("signout").addEventListener("click", () => { if (hub) hub.signOut(); hub = null; location.hash = ""; route(); });
if (hub) start(); else signInPage();
