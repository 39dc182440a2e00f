// The 1022 console: a hotline operator enters a phone report in under a minute. The address is
// searched as it is typed (today's names and the pre-2025 ones), the open reports near the place
// are shown as possible duplicates, and the caller's number goes to the handling ward only.
import { label, lang, setLang, t, when } from "./report-words.js";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("ioc-token");
let map, pin = null, categories = [], places = [];

async function api(path, options = {}) {
  const response = await fetch(`/api/v1${path}`, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  });
  if (response.status === 401) { sessionStorage.removeItem("ioc-token"); $("login").hidden = false; throw new Error("401"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail ?? response.status);
  return body;
}

function place(lat, lon, zoom = 16) {
  if (pin) pin.setLatLng([lat, lon]); else pin = L.marker([lat, lon]).addTo(map);
  map.setView([lat, lon], Math.max(map.getZoom(), zoom));
  suggest();
}

let suggesting;
function suggest() {
  // The open reports near the place, of the category chosen: a caller may be the tenth to call.
  clearTimeout(suggesting);
  suggesting = setTimeout(async () => {
    if (!pin) return;
    const { lat, lng } = pin.getLatLng();
    const near = await api(`/tickets/nearby?lat=${lat}&lon=${lng}&within_m=300&category=${$("category").value}`);
    $("near").replaceChildren(...near.map((n) => {
      const li = document.createElement("li");
      li.textContent = `#${n.id} · ${t(n.state)} · ${n.description.slice(0, 80)} · ${when(n.received_at)}`;
      return li;
    }));
    if (!near.length) $("near").innerHTML = `<li class="meta">${t("none_near")}</li>`;
  }, 200);
}

let lookup;
$("address").addEventListener("input", () => {
  clearTimeout(lookup);
  const q = $("address").value.trim();
  const chosen = places.find((p) => p.unit_name === q);
  if (chosen) { place(chosen.lat, chosen.lon, 14); return; }
  if (q.length < 3) return;
  lookup = setTimeout(async () => {
    places = await api(`/places?q=${encodeURIComponent(q)}`);
    $("places").replaceChildren(...places.map((p) => new Option(`${p.written} → ${p.unit_name}`, p.unit_name)));
  }, 150);
});
$("category").addEventListener("change", suggest);

$("call").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("error").textContent = "";
  const body = {
    category: $("category").value,
    description: $("description").value,
    address: $("address").value || null,
    caller_phone: $("caller_phone").value || null,
    caller_name: $("caller_name").value || null,
  };
  if (pin) Object.assign(body, { lat: pin.getLatLng().lat, lon: pin.getLatLng().lng });
  try {
    const filed = await api("/tickets", { method: "POST", body: JSON.stringify(body) });
    $("code").textContent = filed.code;
    $("done").hidden = false;
    for (const id of ["caller_phone", "caller_name", "address", "description"]) $(id).value = "";
  } catch (err) { $("error").textContent = `${t("error")}: ${err.message}`; }
});

async function start() {
  const me = await api("/auth/me");
  $("who").textContent = `${me.username} · ${me.role}`;
  categories = await api("/categories");
  $("category").replaceChildren(...categories.map((c) => new Option(lang === "vi" ? c.name_vi : c.name_en, c.code)));
  map = L.map("map").setView([16.054, 108.202], 12);
  L.geoJSON(await api("/units"), { style: { color: "#56a3d9", weight: 1, fillOpacity: 0.05 } }).addTo(map);
  map.on("click", (e) => place(e.latlng.lat, e.latlng.lng, map.getZoom()));
}

$("login").querySelector("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const response = await fetch("/api/v1/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  if (!response.ok) return;
  token = (await response.json()).access_token;
  sessionStorage.setItem("ioc-token", token);
  $("login").hidden = true;
  await start();
});
$("lang").addEventListener("click", () => {
  setLang(lang === "vi" ? "en" : "vi");
  $("lang").textContent = lang === "vi" ? "EN" : "VI";
  label();
});

setLang(lang);
$("lang").textContent = lang === "vi" ? "EN" : "VI";
label();
window.ioc = { place };
if (token) start().catch(() => { $("login").hidden = false; }); else $("login").hidden = false;
