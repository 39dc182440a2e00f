// The public page: anyone files a report (category, place, description, photos, contact) and gets a
// tracking code. Mobile first; the place is a pin, the phone's position, or an address.
import { label, lang, setLang, t, when } from "./report-words.js";

const $ = (id) => document.getElementById(id);
let map, pin = null, categories = [];

async function json(path) {
  const response = await fetch(`/api/v1${path}`);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function place(lat, lon, zoom = 16) {
  if (pin) pin.setLatLng([lat, lon]); else pin = L.marker([lat, lon]).addTo(map);
  map.setView([lat, lon], Math.max(map.getZoom(), zoom));
}

function fillCategories() {
  $("category").replaceChildren(...categories.map((c) => new Option(lang === "vi" ? c.name_vi : c.name_en, c.code)));
}

async function buildMap() {
  map = L.map("map", { zoomControl: true }).setView([16.054, 108.202], 12);
  const units = await json("/units");
  L.geoJSON(units, { style: { color: "#56a3d9", weight: 1, fillOpacity: 0.05 } }).addTo(map);
  map.on("click", (e) => place(e.latlng.lat, e.latlng.lng, map.getZoom()));
}

let lookup;
$("address").addEventListener("input", () => {
  clearTimeout(lookup);
  const q = $("address").value.trim();
  if (q.length < 3) return;
  lookup = setTimeout(async () => {
    const found = await json(`/places?q=${encodeURIComponent(q)}`);
    $("places").replaceChildren(...found.map((p) => new Option(`${p.written} → ${p.unit_name}`, p.unit_name)));
    if (found.length && !pin) map.setView([found[0].lat, found[0].lon], 14);
  }, 250);
});

$("locate").addEventListener("click", () => {
  navigator.geolocation?.getCurrentPosition((p) => place(p.coords.latitude, p.coords.longitude));
});

$("report").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("error").textContent = "";
  const form = new FormData($("report"));
  const photos = $("photo").files;
  if (photos.length > 3) { $("error").textContent = t("too_many_photos"); return; }
  form.delete("photo");
  for (const file of photos) form.append("photo", file);
  if (pin) { form.set("lat", pin.getLatLng().lat); form.set("lon", pin.getLatLng().lng); }
  if (!pin && !$("address").value.trim() && !photos.length) { $("error").textContent = t("no_place"); return; }
  $("send").disabled = true;
  $("send").textContent = t("sending");
  try {
    const response = await fetch("/api/v1/public/reports", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail ?? response.status);
    $("code").textContent = body.code;
    $("joined").hidden = !body.joined;
    $("deadline").textContent = when(body.deadline_at);
    $("track").href = `track.html?code=${encodeURIComponent(body.code)}`;
    $("report").hidden = true;
    $("done").hidden = false;
  } catch (err) {
    $("error").textContent = `${t("error")}: ${err.message}`;
  } finally {
    $("send").disabled = false;
    $("send").textContent = t("send");
  }
});

$("lang").addEventListener("click", () => {
  setLang(lang === "vi" ? "en" : "vi");
  $("lang").textContent = lang === "vi" ? "EN" : "VI";
  label();
  fillCategories();
});

setLang(lang);
$("lang").textContent = lang === "vi" ? "EN" : "VI";
label();
categories = await json("/categories");
fillCategories();
await buildMap();
window.ioc = { place };  // the browser tests pin a place as a tap would
