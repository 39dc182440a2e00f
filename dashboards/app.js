// The IOC screen and the ward room: one page, whose scope is the token's.
// It takes the live feed's position first, then its state from REST, then stays live through the
// WebSocket from that position (docs/live-protocol.md): nothing committed after the position is
// missed, however long a cut lasts. It resumes from the newest position the server gave it, and
// reloads on a reset. The pill says "live" only while positions keep coming.
import * as i18n from "./i18n.js";

const { t } = i18n;
const SEVERITIES = ["critical", "major", "minor", "info"];
const COLOURS = { critical: "#e5484d", major: "#f2994a", minor: "#f2c94c", info: "#56a3d9" };
const OPERATORS = new Set(["admin", "city_operator", "ward_operator"]);
const $ = (id) => document.getElementById(id);
const CAMERA_SVG = '<svg viewBox="0 0 22 16" width="22" height="16"><rect x="1" y="3" width="14" height="11" rx="2" ' +
  'fill="#56a3d9" stroke="#0b1117"/><path d="M15 7l6-3v9l-6-3z" fill="#56a3d9" stroke="#0b1117"/></svg>';

const state = {
  token: sessionStorage.getItem("ioc-token"),
  me: null,
  units: new Map(),        // id -> GeoJSON feature
  sensors: new Map(),      // id -> {id, kind, name, unit_id, status, values: {metric: {value, time}}, marker}
  cameras: new Map(),      // id -> camera, with its marker
  alerts: new Map(),       // id -> alert (open and acknowledged)
  tickets: new Map(),      // id -> citizens' report ticket (open), with its marker
  resolving: null,         // the ticket whose resolution an operator is writing
  incidents: new Map(),    // id -> incident (not closed), with its checklist
  opened: new Set(),       // incidents whose checklist is shown
  ticking: null,           // "incident:step" an operator is writing a note for
  desktop: 0,              // desktop notifications shown (the tests read it)
  ticketCues: 0,           // new-report cues given (the tests read it)
  position: null,          // the live feed's position: every event it shows is on the screen
  broker: true,            // whether live values flow (the server says, with each position)
  heardAt: 0,              // when the server last sent anything (ms)
  resumed: false,          // a position has come since the last (re)subscription
  cues: 0,                 // new-alert cues given (the tests read it)
  seen: new Set(),         // ids of the latest events received (the tests read them)
  socket: null,
};
const QUIET_MS = 5000;     // no word from the server this long: the pill stops saying "live"
const DEAD_MS = 15000;     // ... and this long: the connection is dropped and made again
let map, unitLayer, renderer;

// --- REST

async function api(path, options = {}) {
  const response = await fetch(`/api/v1${path}`, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
  });
  if (response.status === 401) { logout(); throw new Error("logged out"); }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.headers.get("content-type")?.includes("json") ? response.json() : response;
}

// --- the map

async function buildMap() {
  const config = await (await fetch("/api/v1/screen")).json();
  renderer = L.canvas({ padding: 0.2 });
  map = L.map("map", { preferCanvas: true, renderer, zoomSnap: 0.25, attributionControl: false });
  if (config.tile_url) L.tileLayer(config.tile_url, { maxZoom: 19 }).addTo(map);
  const fc = await (await fetch("/api/v1/units")).json();
  const city = fc.features.find((f) => f.properties.kind === "city");
  const units = fc.features.filter((f) => f.properties.kind !== "city");
  for (const f of units) state.units.set(f.id, f);
  if (city?.geometry) {
    L.geoJSON(city, { renderer, style: { color: "#8fa3b8", weight: 2, fill: false }, interactive: false }).addTo(map);
  }
  unitLayer = L.geoJSON({ type: "FeatureCollection", features: units.filter((f) => f.geometry) }, {
    renderer,
    style: () => ({ color: "#3b4f63", weight: 1, fillColor: "#1c2a38", fillOpacity: 0.55 }),
    onEachFeature: (f, layer) => layer.bindTooltip(() => unitTooltip(f), { sticky: true }),
  }).addTo(map);
}

// Tooltips are HTML: whatever came from devices or the registry is escaped into them.
const esc = (v) => String(v).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

function unitTooltip(f) {
  const open = [...state.alerts.values()].filter((a) => a.unit_id === f.id);
  return `<strong>${esc(f.properties.name)}</strong><br>${open.length} ${t("alerts").toLowerCase()}`;
}

function fitScope() {
  const scope = state.me.units;
  if (scope) {
    const layers = unitLayer.getLayers().filter((l) => scope.includes(l.feature.id));
    if (layers.length) map.fitBounds(L.featureGroup(layers).getBounds(), { padding: [10, 10] });
  } else {
    // The city view frames the mainland by the units' centres: the islands far offshore (Hoàng Sa,
    // and outlying parts of two island communes) stay drawn but outside the frame.
    const centres = unitLayer.getLayers().filter((l) => l.feature.properties.kind !== "special_zone")
      .map((l) => [l.feature.properties.lat, l.feature.properties.lon]);
    const median = (i) => centres.map((c) => c[i]).sort((a, b) => a - b)[Math.floor(centres.length / 2)];
    const [mlat, mlon] = [median(0), median(1)];
    const near = centres.filter(([lat, lon]) => Math.abs(lat - mlat) < 1 && Math.abs(lon - mlon) < 1);
    if (near.length) map.fitBounds(L.latLngBounds(near).pad(0.08));
  }
  unitLayer.eachLayer((l) => l.setStyle({ opacity: !scope || scope.includes(l.feature.id) ? 1 : 0.25 }));
}

function worstByUnit() {
  const worst = new Map();
  for (const a of state.alerts.values()) {
    const now = worst.get(a.unit_id);
    if (!now || SEVERITIES.indexOf(a.severity) < SEVERITIES.indexOf(now)) worst.set(a.unit_id, a.severity);
  }
  return worst;
}

function shadeUnits() {
  const worst = worstByUnit();
  unitLayer.eachLayer((l) => {
    const severity = worst.get(l.feature.id) ?? null;
    if (l.severity === severity) return;  // a repaint of the map costs tens of ms with 10,000 markers
    l.severity = severity;
    l.setStyle({ fillColor: severity ? COLOURS[severity] : "#1c2a38", fillOpacity: severity ? 0.5 : 0.55 });
  });
}

function sensorColour(s) {
  // By status only, so that a value arriving does not repaint the map (10,000 markers on a wall).
  if (alertedSources().has(s.id)) return COLOURS.critical;
  return s.status === "offline" ? "#6b7785" : "#3fb950";
}

let alertedCache = null;
function alertedSources() {
  alertedCache ??= new Set([...state.alerts.values()].map((a) => a.source_id));
  return alertedCache;
}

function sensorTooltip(s) {
  const lines = Object.entries(s.values)
    .map(([metric, v]) => `${esc(metric)}: <strong>${esc(i18n.measure(metric, v.value))}</strong> · ${i18n.time(v.time)}`);
  const unit = state.units.get(s.unit_id)?.properties.name ?? s.unit_id;
  return `<strong>${esc(s.name || s.id)}</strong> (${esc(s.kind)})<br>${esc(unit)}<br>${lines.join("<br>") || "–"}`;
}

async function loadSensors() {
  const fc = await api("/latest");
  for (const f of fc.features) {
    const s = { id: f.id, ...f.properties, values: f.properties.values || {} };
    const old = state.sensors.get(s.id);
    if (old?.marker) old.marker.remove();
    if (f.geometry) {
      const [lon, lat] = f.geometry.coordinates;
      // Handlers look the sensor up when they run: a reload replaces the objects, not the markers' ids.
      const current = () => state.sensors.get(s.id) ?? s;
      s.marker = L.circleMarker([lat, lon], { renderer, radius: 4, weight: 1, color: "#0b1117", fillOpacity: 0.9 })
        .bindTooltip(() => sensorTooltip(current()))
        .on("click", () => showHistory(current()))
        .addTo(map);
    }
    state.sensors.set(s.id, s);
  }
  recolourSensors();
}

async function loadCameras() {
  for (const c of await api("/cameras")) {
    state.cameras.get(c.id)?.marker?.remove();
    if (c.lat != null && c.lon != null) {
      const icon = L.divIcon({ className: "camera-icon", html: CAMERA_SVG, iconSize: [22, 16] });
      c.marker = L.marker([c.lat, c.lon], { icon }).bindPopup(() => cameraPopup(c), { minWidth: 330 }).addTo(map);
    }
    state.cameras.set(c.id, c);
  }
}

function cameraPopup(c) {
  // Built from nodes, not HTML: a camera's name is text, whatever it contains.
  const box = document.createElement("div");
  box.appendChild(document.createElement("strong")).textContent = c.name || c.id;
  box.append(` · ${c.status}`);
  const shot = box.appendChild(document.createElement("div"));
  shot.className = "shot";
  shot.textContent = `${t("snapshot")}…`;
  const table = box.appendChild(document.createElement("table"));
  const counts = Object.entries(c.counts || {}).filter(([, v]) => v > 0);
  if (!counts.length) table.insertRow().insertCell().textContent = `${t("counts")}: –`;
  for (const [k, v] of counts) {
    const row = table.insertRow();
    row.insertCell().textContent = k;
    Object.assign(row.insertCell(), { className: "num", textContent: i18n.number(v, 0) });
  }
  api(`/cameras/${c.id}/snapshots/latest.jpg`)
    .then((r) => r.blob())
    .then((blob) => shot.replaceChildren(Object.assign(document.createElement("img"), { alt: "", src: URL.createObjectURL(blob) })))
    .catch(() => { shot.textContent = `${t("snapshot")}: –`; });
  return box;
}

let recolourPending = false;
function recolourSensors() {
  if (recolourPending) return;
  recolourPending = true;
  requestAnimationFrame(() => {
    recolourPending = false;
    alertedCache = null;
    for (const s of state.sensors.values()) {
      const colour = sensorColour(s);
      if (s.marker && s.colour !== colour) { s.colour = colour; s.marker.setStyle({ fillColor: colour }); }
    }
  });
}

// --- a sensor's history

let plot = null;

// A stretch without data (a camera offline, a sensor silent) is a gap in the line, not a line drawn
// across it: a point without a value wherever buckets are missing for longer than the sensor's
// own rhythm (a bucket, or twice its reporting interval).
function withGaps(buckets, bucketS, intervalS) {
  const xs = [], ys = [], longest = Math.max(bucketS, 2 * (intervalS || 0));
  let last = null;
  for (const b of buckets) {
    const x = new Date(b.time).getTime() / 1000;
    if (last !== null && x - last > longest) { xs.push(last + bucketS); ys.push(null); }
    xs.push(x); ys.push(b.avg); last = x;
  }
  return [xs, ys];
}

async function showHistory(s) {
  const metric = Object.keys(s.values)[0];
  if (!metric) return;
  const end = new Date(), start = new Date(end - 24 * 3600 * 1000);
  const series = await api(`/sensors/${encodeURIComponent(s.id)}/readings?metric=${metric}` +
    `&start=${start.toISOString()}&end=${end.toISOString()}&bucket=10m`);
  const [xs, ys] = withGaps(series.buckets, series.bucket_seconds, s.interval_s);
  $("chart-title").textContent = `${s.name || s.id} · ${metric} · ${t("history")}`;
  $("chart").hidden = false;
  plot?.destroy();
  plot = new uPlot({
    width: 520, height: 220,
    series: [{}, { label: metric, stroke: "#56a3d9", width: 2, value: (u, v) => v == null ? "–" : i18n.measure(metric, v) }],
    axes: [{ stroke: "#8fa3b8" }, { stroke: "#8fa3b8", values: (u, vals) => vals.map((v) => i18n.number(v)) }],
  }, [xs, ys], $("chart-plot"));
}

// --- alerts

async function loadAlerts() {
  const alerts = await api("/alerts?state=open&state=acknowledged&limit=1000");
  state.alerts = new Map(alerts.map((a) => [a.id, a]));
  renderAlerts();
}

const STORM = 5;  // an incident of more members stands for its alerts: a storm is one line, not hundreds

function renderAlerts(fresh = new Set()) {
  const list = $("alerts");
  const shown = [...state.alerts.values()].filter((a) => !(state.incidents.get(a.incident_id)?.members > STORM));
  const sorted = shown.sort((a, b) =>
    SEVERITIES.indexOf(a.severity) - SEVERITIES.indexOf(b.severity) || new Date(a.opened_at) - new Date(b.opened_at));
  const canAct = OPERATORS.has(state.me?.role);
  list.replaceChildren(...sorted.map((a) => {
    const li = document.createElement("li");
    li.dataset.alertId = a.id;
    li.dataset.state = a.state;
    if (fresh.has(a.id)) li.classList.add("fresh");
    const unit = state.units.get(a.unit_id)?.properties.name ?? a.unit_id ?? "";
    li.innerHTML = `<div><span class="sev ${a.severity}">${t(a.severity)}</span> <span class="title"></span></div>` +
      `<div class="meta"></div><div class="state"></div>`;
    // What devices and people wrote is set as text, never parsed as HTML.
    li.querySelector(".title").textContent = `${a.exercise ? `${t("exercise")} · ` : ""}${a.title}`;
    li.querySelector(".meta").textContent = `${unit} · ${a.source_id} · ${i18n.age(a.opened_at)}` +
      `${a.last_value != null ? ` · ${i18n.number(a.last_value)}` : ""}`;
    li.querySelector(".state").textContent = `${t(a.state)}${a.acknowledged_by ? ` · ${a.acknowledged_by}` : ""}`;
    if (canAct) {
      const actions = document.createElement("div");
      actions.className = "actions";
      if (a.state === "open") actions.append(actionButton(a, "acknowledge"));
      actions.append(actionButton(a, "resolve"));
      li.append(actions);
    }
    li.addEventListener("click", () => { if (a.lat != null) map.setView([a.lat, a.lon], Math.max(map.getZoom(), 13)); });
    return li;
  }));
  if (!sorted.length) list.innerHTML = `<li class="meta">${t("no_alerts")}</li>`;
  shadeUnits();
  recolourSensors();
  renderKpis();
}

function actionButton(alert, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.action = action;
  button.textContent = t(action);
  button.addEventListener("click", async (e) => {
    e.stopPropagation();
    button.disabled = true;
    try {
      const updated = await api(`/alerts/${alert.id}/${action}`, { method: "POST", body: "{}" });
      if (updated.state === "resolved") state.alerts.delete(updated.id); else state.alerts.set(updated.id, updated);
      renderAlerts();
    } catch { button.disabled = false; }
  });
  return button;
}

// --- citizens' reports: the unit's open tickets, overdue first, with a marker each

const TICKET_COLOUR = "#b57edc";

async function loadTickets() {
  if (!OPERATORS.has(state.me?.role)) return;
  const tickets = await api("/tickets?limit=500");
  for (const old of state.tickets.values()) old.marker?.remove();
  state.tickets = new Map(tickets.map((k) => [k.id, k]));
  renderTickets();
}

function hoursText(k) {
  const h = i18n.number(Math.abs(k.working_hours_left), 1);
  return t(k.working_hours_left >= 0 ? "hours_left" : "overdue").replace("{h}", h);
}

function renderTickets(fresh = new Set()) {
  if (state.resolving) return;  // not while an operator writes a resolution: it would be wiped
  const list = $("tickets");
  const sorted = [...state.tickets.values()].sort((a, b) => a.working_hours_left - b.working_hours_left);
  list.replaceChildren(...sorted.map((k) => {
    const li = document.createElement("li");
    li.dataset.ticketId = k.id;
    li.dataset.state = k.state;
    if (fresh.has(k.id)) li.classList.add("fresh");
    li.innerHTML = `<div><span class="sev ${k.emergency ? "major" : "minor"}"></span> <span class="title"></span></div>` +
      `<div class="meta"></div><div class="state"></div><div class="actions"></div>`;
    li.querySelector(".sev").textContent = k.emergency ? t("emergency") : k.category;
    // What citizens wrote: text, never HTML.
    li.querySelector(".title").textContent = `${k.exercise ? `${t("exercise")} · ` : ""}${k.description}`;
    const unit = state.units.get(k.unit_id)?.properties.name ?? k.unit_id;
    li.querySelector(".meta").textContent = `${unit} · ${t("reporters").replace("{n}", k.reporters)} · ${i18n.age(k.received_at)}`;
    li.querySelector(".state").textContent = `${t(k.state)} · ${hoursText(k)}`;
    const actions = li.querySelector(".actions");
    if (k.state === "received") actions.append(ticketButton(k, "accept"));
    if (k.state !== "in_progress") actions.append(ticketButton(k, "start"));
    actions.append(ticketButton(k, "resolve"));
    li.addEventListener("click", () => map.setView([k.lat, k.lon], Math.max(map.getZoom(), 15)));
    k.marker ??= L.circleMarker([k.lat, k.lon], { renderer, radius: 7, color: "#0b1117", weight: 1,
      fillColor: TICKET_COLOUR, fillOpacity: 0.95 }).bindTooltip(() => esc(k.description)).addTo(map);
    return li;
  }));
  if (!sorted.length) list.innerHTML = `<li class="meta">${t("no_tickets")}</li>`;
}

function ticketButton(ticket, step) {
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.step = step;
  button.textContent = t(step);
  button.addEventListener("click", async (e) => {
    e.stopPropagation();
    if (step === "resolve") { resolveForm(ticket, button.closest("li")); return; }
    button.disabled = true;
    try {
      await api(`/tickets/${ticket.id}/${step}`, { method: "POST", body: "{}" });
      await loadTickets();
    } catch { button.disabled = false; }
  });
  return button;
}

function resolveForm(ticket, li) {
  // What was done, and up to three photos of it: what the citizen will see.
  state.resolving = ticket.id;
  const form = document.createElement("form");
  form.className = "resolve";
  form.innerHTML = '<textarea name="note" required maxlength="2000" rows="2"></textarea>' +
    '<input name="photo" type="file" accept="image/jpeg,image/png,image/webp" multiple>' +
    '<div class="actions"><button type="submit"></button><button type="button" data-cancel></button></div>';
  form.note.placeholder = t("note_resolve");
  form.querySelector("[type=submit]").textContent = t("resolve");
  form.querySelector("[data-cancel]").textContent = t("close");
  form.addEventListener("click", (e) => e.stopPropagation());
  form.querySelector("[data-cancel]").addEventListener("click", () => { state.resolving = null; renderTickets(); });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = new FormData(form);
    if (!form.photo.files.length) body.delete("photo");
    const response = await fetch(`/api/v1/tickets/${ticket.id}/resolve-with-photo`, {
      method: "POST", body, headers: { Authorization: `Bearer ${state.token}` },
    });
    if (!response.ok) return;
    state.resolving = null;
    await loadTickets();
  });
  li.append(form);
  form.note.focus();
}

let ticketReload = null;
let newTickets = [];
function onTicketEvent(event) {
  if (event.kind === "citizen.report.received" && !event.replay) newTickets.push(event);
  clearTimeout(ticketReload);
  ticketReload = setTimeout(async () => {
    const fresh = newTickets;
    newTickets = [];
    await loadTickets();
    if (fresh.length) {
      state.ticketCues += fresh.length;
      renderTickets(new Set(fresh.map((e) => e.data?.ticket_id)));
      if (state.me?.role === "ward_operator") beep();
    }
  }, 100);
}

async function loadSprint() {
  // The civic sprint on the city's screen: the units most and least on time over 30 days.
  if (state.me?.role === "ward_operator") return;
  const rows = (await (await fetch("/api/v1/open/sprint/ranking")).json()).filter((r) => r.received > 0);
  const box = $("sprint");
  box.hidden = !rows.length;
  if (!rows.length) return;
  const shown = rows.length > 8 ? [...rows.slice(0, 4), ...rows.slice(-4)] : rows;
  const table = document.createElement("table");
  for (const r of shown) {
    const tr = table.insertRow();
    tr.insertCell().textContent = `${r.rank}. ${r.unit_name}`;
    const cell = tr.insertCell();
    cell.className = "num";
    cell.textContent = `${i18n.number((r.on_time_share ?? 0) * 100, 0)} %`;
  }
  const title = document.createElement("strong");
  title.textContent = t("sprint");
  box.replaceChildren(title, table);
}

// --- incidents: what belongs to one situation, worked through its checklist

const NEXT_STATE = { open: "responding", responding: "stabilised", stabilised: "closed" };

async function loadIncidents() {
  const incidents = await api("/incidents?limit=500");
  state.incidents = new Map(incidents.map((i) => [i.id, i]));
  renderIncidents();
  renderAlerts();  // the alerts an incident holds are shown in it, not one by one
}

function words(key, values) {
  return Object.entries(values).reduce((text, [k, v]) => text.replace(`{${k}}`, v), t(key));
}

function renderIncidents(fresh = new Set()) {
  if (state.ticking) return;  // not while a note is being written
  const list = $("incidents");
  const sorted = [...state.incidents.values()].sort((a, b) =>
    SEVERITIES.indexOf(a.severity) - SEVERITIES.indexOf(b.severity) || new Date(a.opened_at) - new Date(b.opened_at));
  list.replaceChildren(...sorted.map((inc) => {
    const li = document.createElement("li");
    li.dataset.incidentId = inc.id;
    li.dataset.state = inc.state;
    if (fresh.has(inc.id)) li.classList.add("fresh");
    li.innerHTML = `<div><span class="sev ${inc.severity}">${t(inc.severity)}</span> <span class="drill"></span>` +
      '<span class="title"></span></div><div class="meta"></div><div class="progress"><span></span></div>' +
      '<div class="state"></div><div class="actions"></div>';
    li.querySelector(".drill").textContent = inc.exercise ? `${t("exercise")} ` : "";
    const name = (i18n.lang === "vi" ? inc.sop_name_vi : inc.sop_name_en) || inc.type;
    li.querySelector(".title").textContent = `${name}: ${inc.title}`;
    const unit = state.units.get(inc.unit_id)?.properties.name ?? inc.unit_id;
    li.querySelector(".meta").textContent = `${unit} · ${words("members", { n: inc.members })} · ${i18n.age(inc.opened_at)}`;
    const bar = li.querySelector(".progress span");
    bar.style.width = `${inc.steps_total ? (100 * inc.steps_done) / inc.steps_total : 0}%`;
    li.querySelector(".state").textContent = [t(inc.state), words("steps", { done: inc.steps_done, total: inc.steps_total }),
      inc.steps_overdue ? words("steps_late", { n: inc.steps_overdue }) : ""].filter(Boolean).join(" · ");
    if (inc.steps_overdue) li.classList.add("late");
    const actions = li.querySelector(".actions");
    if (!inc.acknowledged_at) actions.append(incidentButton(inc, "acknowledge", () =>
      api(`/incidents/${inc.id}/acknowledge`, { method: "POST" })));
    if (NEXT_STATE[inc.state]) actions.append(incidentButton(inc, NEXT_STATE[inc.state], () =>
      api(`/incidents/${inc.id}/state`, { method: "POST", body: JSON.stringify({ state: NEXT_STATE[inc.state] }) })));
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.dataset.action = "checklist";
    toggle.textContent = t("checklist");
    toggle.addEventListener("click", (e) => {
      e.stopPropagation();
      if (state.opened.has(inc.id)) state.opened.delete(inc.id); else state.opened.add(inc.id);
      renderIncidents();
    });
    actions.append(toggle);
    if (state.opened.has(inc.id)) li.append(checklistOf(inc));
    li.addEventListener("click", () => { if (inc.lat != null) map.setView([inc.lat, inc.lon], Math.max(map.getZoom(), 14)); });
    return li;
  }));
  if (!sorted.length) list.innerHTML = `<li class="meta">${t("no_incidents")}</li>`;
}

function incidentButton(inc, action, call) {
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.action = action;
  button.textContent = t(action);
  button.addEventListener("click", async (e) => {
    e.stopPropagation();
    button.disabled = true;
    try { await call(); await loadIncidents(); } catch { button.disabled = false; }
  });
  return button;
}

function mayWork(step) {
  const role = state.me?.role;
  return role === "admin" || role === "city_operator" || role === step.role ||
    (step.tier === "ward" && role === "ward_operator");
}

function checklistOf(inc) {
  const ol = document.createElement("ol");
  ol.className = "checklist";
  ol.addEventListener("click", (e) => e.stopPropagation());
  for (const step of inc.checklist) {
    const li = document.createElement("li");
    li.dataset.step = step.key;
    li.className = step.done_at ? "done" : step.overdue ? "overdue" : "";
    const text = document.createElement("span");
    const action = i18n.lang === "vi" ? step.action_vi : step.action_en;
    const who = step.done_at ? ` · ${step.done_by} ${i18n.time(step.done_at)}${step.note ? ` · ${step.note}` : ""}` : "";
    text.textContent = `${action} (${t(`${step.tier}_tier`)}, ${i18n.time(step.due_at)})${who}`;
    li.append(text);
    if (!step.done_at && mayWork(step)) {
      const tick = document.createElement("button");
      tick.type = "button";
      tick.dataset.action = "tick";
      tick.textContent = t("tick");
      tick.addEventListener("click", () => tickForm(inc, step, li));
      li.append(tick);
    }
    if (step.approval && step.done_at && !step.approved_at && ["admin", "city_operator"].includes(state.me?.role)) {
      li.append(incidentButton(inc, "approve", () =>
        api(`/incidents/${inc.id}/steps/${step.key}/approve`, { method: "POST" })));
    }
    if (step.approved_at) li.append(` · ${t("approved")} ${step.approved_by}`);
    ol.append(li);
  }
  return ol;
}

function tickForm(inc, step, li) {
  // Done: with a note and a photo, if the room has one to give.
  state.ticking = `${inc.id}:${step.key}`;
  const form = document.createElement("form");
  form.className = "tick";
  form.innerHTML = '<input name="note" maxlength="2000"><input name="photo" type="file" accept="image/jpeg,image/png,image/webp">' +
    '<button type="submit"></button>';
  form.note.placeholder = t("note");
  form.querySelector("button").textContent = t("tick");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = new FormData(form);
    if (!form.photo.files.length) body.delete("photo");
    const response = await fetch(`/api/v1/incidents/${inc.id}/steps/${step.key}`, {
      method: "POST", body, headers: { Authorization: `Bearer ${state.token}` },
    });
    state.ticking = null;
    if (response.ok) state.incidents.set(inc.id, await response.json());
    renderIncidents();
  });
  li.append(form);
  form.note.focus();
}

let incidentReload = null;
let newIncidents = [];
function onIncidentEvent(event) {
  if (["incident.opened", "incident.raised"].includes(event.kind) && !event.replay) newIncidents.push(event);
  clearTimeout(incidentReload);
  incidentReload = setTimeout(async () => {
    const fresh = newIncidents;
    newIncidents = [];
    await loadIncidents();
    if (fresh.length) {
      renderIncidents(new Set(fresh.map((e) => e.data?.incident_id)));
      for (const e of fresh) desktopNotification(e);
      beep();
    }
  }, 100);
}

function desktopNotification(event) {
  // Seen and heard when the screen is in a background tab or behind another window.
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const drill = event.data?.exercise ? `${t("exercise")} · ` : "";
  const unit = state.units.get(event.unit_id)?.properties.name ?? event.unit_id;
  new Notification(`${drill}${t("new_incident")}: ${t(event.severity)}`, {
    body: `${event.title} · ${unit}`, tag: `incident-${event.data?.incident_id}`, requireInteraction: event.severity === "critical",
  });
  state.desktop += 1;
}

let alertReload = null;
let newlyOpened = [];
function onAlertEvent(event) {
  // The event says what changed; the list is reloaded (debounced) so that it holds every field.
  // Every alert opened live in that time is cued, whatever other events came with it.
  if (event.kind === "alert.opened" && !event.replay) newlyOpened.push(event);
  clearTimeout(alertReload);
  alertReload = setTimeout(async () => {
    const opened = newlyOpened;
    newlyOpened = [];
    await loadAlerts();
    if (opened.length) cue(opened);
  }, 100);
}

function cue(events) {
  // New alerts: a flash of the page and, in a ward room, a sound.
  state.cues += events.length;
  renderAlerts(new Set(events.map((e) => e.data?.alert_id)));
  document.body.classList.remove("flash");
  void document.body.offsetWidth;
  document.body.classList.add("flash");
  if (state.me.role === "ward_operator") beep();
}

function beep() {
  try {
    const ctx = (beep.ctx ??= new AudioContext());
    for (const [i, freq] of [880, 660, 880].entries()) {
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.2, ctx.currentTime + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + i * 0.25 + 0.22);
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + i * 0.25);
      osc.stop(ctx.currentTime + i * 0.25 + 0.23);
    }
  } catch { /* no audio device: the flash remains */ }
}

// --- key figures

let kpiPending = false;
function renderKpis() {
  if (kpiPending) return;
  kpiPending = true;
  setTimeout(() => { kpiPending = false; drawKpis(); }, 250);
}

function drawKpis() {
  const bySeverity = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
  for (const a of state.alerts.values()) bySeverity[a.severity] += 1;
  kpi("open", i18n.number(state.alerts.size, 0),
      SEVERITIES.map((s) => Object.assign(document.createElement("span"), { className: `sev ${s}`, textContent: bySeverity[s] })));
  let air = null, water = null, vehicles = 0;
  for (const s of state.sensors.values()) {
    const v = s.values;
    if (v.pm25 && (!air || v.pm25.value > air.value)) air = { value: v.pm25.value, s };
    if (v.level_m && (!water || v.level_m.value > water.value)) water = { value: v.level_m.value, s };
    if (s.kind === "traffic") {
      for (const m of ["motorcycles", "cars", "trucks", "buses"]) vehicles += v[m]?.value ?? 0;
    }
  }
  kpi("air", air ? i18n.measure("pm25", air.value) : "–", air ? placeOf(air.s) : "");
  kpi("water", water ? i18n.measure("level_m", water.value) : "–", water ? placeOf(water.s) : "");
  kpi("traffic", i18n.number(vehicles * 60, 0), `${i18n.number(state.sensors.size, 0)} ${t("sensors")}`);
  kpi("ack", i18n.duration(state.ackMedianToday), "");
}

const placeOf = (s) => `${s.name || s.id} · ${state.units.get(s.unit_id)?.properties.name ?? ""}`;

function kpi(name, value, sub) {  // sub: text, or nodes
  const box = $(`kpi-${name}`);
  box.querySelector(".label").textContent = t(`kpi_${name}`);
  box.querySelector(".value").textContent = value;
  box.querySelector(".sub").replaceChildren(...(Array.isArray(sub) ? sub : [sub]));
}

async function loadResponseFigures() {
  // Median time to acknowledge today (city time), over the alerts acknowledged in scope.
  const day = 86400000, utcOffset = 7 * 3600000;  // Asia/Ho_Chi_Minh, no daylight saving
  const midnight = Math.floor((Date.now() + utcOffset) / day) * day - utcOffset;
  const done = await api("/alerts?state=acknowledged&state=resolved&limit=1000");
  const waits = done.filter((a) => a.acknowledged_at && new Date(a.opened_at).getTime() >= midnight)
    .map((a) => (new Date(a.acknowledged_at) - new Date(a.opened_at)) / 1000).sort((x, y) => x - y);
  state.ackMedianToday = waits.length ? waits[Math.floor((waits.length - 1) / 2)] : null;
  if (state.me.role === "ward_operator") {
    const rows = await api("/response-times?period=week");
    const box = $("response");
    const sum = (k) => rows.reduce((n, r) => n + (r[k] || 0), 0);
    const median = (k) => { const v = rows.map((r) => r[k]).filter((x) => x != null).sort((a, b) => a - b);
                            return v.length ? v[Math.floor((v.length - 1) / 2)] : null; };
    box.innerHTML = `<strong>${t("response_week")}</strong><table>` +
      `<tr><td>${t("alerts")}</td><td class="num">${i18n.number(sum("alerts"), 0)}</td></tr>` +
      `<tr><td>${t("ack_median")}</td><td class="num">${i18n.duration(median("acknowledge_median_s"))}</td></tr>` +
      `<tr><td>${t("resolve_median")}</td><td class="num">${i18n.duration(median("resolve_median_s"))}</td></tr></table>`;
    box.hidden = false;
  }
  renderKpis();
}

// --- live

function connection(status) {
  const pill = $("connection");
  if (pill.dataset.status === status) return;
  pill.dataset.status = status;
  pill.textContent = t(status);
  pill.className = `pill ${status === "live" ? "live" : status === "degraded" ? "degraded" : status === "connecting" ? "" : "down"}`;
}

function showLive() {
  // Live: a position came lately. Degraded: events are complete, but live values do not flow.
  connection(state.broker ? "live" : "degraded");
}

function connect() {
  connection(state.socket ? "reconnecting" : "connecting");
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  state.socket = ws;
  state.resumed = false;
  ws.onopen = () => {
    state.heardAt = Date.now();
    ws.send(JSON.stringify({ type: "auth", token: state.token }));
    ws.send(JSON.stringify({ type: "subscribe", units: state.me.units, values: true, since: state.position }));
  };
  ws.onmessage = (e) => {
    if (ws !== state.socket) return;
    state.heardAt = Date.now();
    const frame = JSON.parse(e.data);
    for (const msg of frame.type === "batch" ? frame.messages : [frame]) handle(msg);
  };
  ws.onclose = (e) => {
    if (ws !== state.socket) return;
    if (e.code === 4401) { logout(); return; }
    if (e.code === 4205) { location.reload(); return; }  // the user's role or units changed
    connection("reconnecting");
    setTimeout(connect, 1000);
  };
}

function watchConnection() {
  // The server speaks at least every second or so while its feed is complete; silence means the
  // feed (or the connection) is stuck, whatever the socket says.
  const ws = state.socket;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const quiet = Date.now() - state.heardAt;
  if (quiet > DEAD_MS) { connection("reconnecting"); ws.close(); state.socket = null; connect(); }
  else if (quiet > QUIET_MS) connection("stale");
}

function handle(msg) {
  switch (msg.type) {
    case "position": onPosition(msg); break;
    case "values": onValues(msg.values); break;
    case "event": onEvent({ ...msg.event, replay: msg.replay }); break;
    case "reset": state.position = msg.position; state.resumed = true; reload().then(showLive); break;
  }
}

function onPosition(msg) {
  const wasDown = !state.broker;
  state.position = msg.position;
  state.broker = msg.broker;
  if (!state.resumed) {
    // What was missed while away is in: its events came before this position. Values are not
    // replayed: the latest ones come from REST.
    state.resumed = true;
    if (state.hadSession) loadSensors();
    state.hadSession = true;
  } else if (wasDown && msg.broker) loadSensors();
  showLive();
}

function onValues(values) {
  for (const v of values) {
    const s = state.sensors.get(v.sensor_id);
    if (s) { s.values[v.metric] = { value: v.value, time: v.time }; continue; }
    const c = state.cameras.get(v.sensor_id);
    if (c) (c.counts ??= {})[v.metric] = v.value;
  }
  renderKpis();  // markers are coloured by status, which values do not change
}

function onEvent(event) {
  state.seen.add(event.id);
  if (state.seen.size > 10000) state.seen.delete(state.seen.values().next().value);
  if (event.kind.startsWith("alert.")) onAlertEvent(event);
  if (event.kind.startsWith("citizen.report.")) onTicketEvent(event);
  if (event.kind.startsWith("incident.")) onIncidentEvent(event);
  if (event.kind.startsWith("device.")) {
    const s = state.sensors.get(event.source.id) ?? state.cameras.get(event.source.id);
    if (s) { s.status = event.kind.slice(7); recolourSensors(); }
  }
}

async function reload() {
  await Promise.all([loadSensors(), loadCameras(), loadAlerts(), loadTickets(), loadIncidents(), loadResponseFigures(),
    loadSprint()]);
}

// --- session and language

function labels() {
  document.title = state.me?.role === "ward_operator" ? `${t("ward_title")} · Đà Nẵng` : "IOC · Đà Nẵng";
  $("title").textContent = state.me?.role === "ward_operator"
    ? `${t("ward_title")} · ${state.me.units.map((u) => state.units.get(u)?.properties.name ?? u).join(", ")}`
    : t("title");
  $("lang").textContent = i18n.lang === "vi" ? "EN" : "VI";
  $("logout").textContent = t("logout");
  $("alerts-title").textContent = t("alerts");
  $("tickets-title").textContent = t("tickets");
  $("incidents-title").textContent = t("incidents");
  $("chart-close").textContent = t("close");
  $("login-title").textContent = t("login");
  $("login-button").textContent = t("login");
  $("username").placeholder = t("username");
  $("password").placeholder = t("password");
  if ($("connection").dataset.status) connection($("connection").dataset.status);
}

function logout() {
  sessionStorage.removeItem("ioc-token");
  location.reload();
}

async function start() {
  state.me = await api("/auth/me");
  $("who").textContent = `${state.me.username} · ${state.me.role}`;
  $("logout").hidden = false;
  labels();
  fitScope();
  // The position first, then the state: whatever is committed after the position comes live.
  state.position = (await api("/live/position")).position;
  await reload();
  connect();
  setInterval(watchConnection, 1000);
  setInterval(() => { renderAlerts(); renderTickets(); renderIncidents(); }, 15000);  // ages
  setInterval(loadIncidents, 30000);  // steps falling late
  setInterval(loadSprint, 300000);
  setInterval(loadResponseFigures, 60000);
}

$("lang").addEventListener("click", () => {
  i18n.setLang(i18n.lang === "vi" ? "en" : "vi");
  labels();
  renderAlerts();
  renderTickets();
  renderIncidents();
  drawKpis();
});
$("logout").addEventListener("click", logout);
$("chart-close").addEventListener("click", () => { $("chart").hidden = true; });
$("login").querySelector("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const response = await fetch("/api/v1/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  if (!response.ok) { $("login-error").textContent = t("wrong_login"); return; }
  state.token = (await response.json()).access_token;
  sessionStorage.setItem("ioc-token", state.token);
  if ("Notification" in window && Notification.permission === "default") Notification.requestPermission();
  $("login").hidden = true;
  await start();
});

window.ioc = {
  // What the browser tests read: counts of what the screen holds and shows.
  chart: () => (plot ? { xs: [...plot.data[0]], ys: [...plot.data[1]] } : null),
  stats: () => ({
    units: unitLayer?.getLayers().length ?? 0,
    sensors: state.sensors.size,
    markers: [...state.sensors.values()].filter((s) => s.marker).length,
    cameras: state.cameras.size,
    alerts: state.alerts.size,
    alertIds: [...state.alerts.keys()],
    cues: state.cues,
    tickets: state.tickets.size,
    ticketIds: [...state.tickets.keys()],
    ticketCues: state.ticketCues,
    incidents: state.incidents.size,
    incidentIds: [...state.incidents.keys()],
    desktop: state.desktop,
    connection: $("connection").dataset.status,
    sensorIds: [...state.sensors.keys()],
  }),
  valuesOf: (sensorId) => JSON.stringify(state.sensors.get(sensorId)?.values ?? {}),
  eventIds: () => [...state.seen],
  open: (sensorId) => state.sensors.get(sensorId)?.marker?.fire("click"),  // as a click on its marker
  drop: () => state.socket?.close(),  // as a network cut
};

i18n.setLang(i18n.lang);
labels();
await buildMap();
if (state.token) start().catch(() => logout()); else $("login").hidden = false;
