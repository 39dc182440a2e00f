// The civic sprint, for all: the units ranked by how many reports they handle on time, and how
// fast, with the open data behind it as CSV and JSON.
import { label, lang, setLang, t } from "./report-words.js";

const $ = (id) => document.getElementById(id);
const pct = (x) => (x == null ? "–" : `${(x * 100).toFixed(0)}%`);
const num = (x) => (x == null ? "–" : x.toLocaleString(lang === "vi" ? "vi-VN" : "en-GB"));

async function draw() {
  const span = new URLSearchParams();
  if ($("start").value) span.set("start", $("start").value);
  if ($("end").value) span.set("end", $("end").value);
  const query = span.toString() ? `?${span}` : "";
  $("csv-ranking").href = `/api/v1/open/sprint/ranking${query}${query ? "&" : "?"}format=csv`;
  $("csv-sprint").href = `/api/v1/open/sprint${query}${query ? "&" : "?"}format=csv`;
  $("json-sprint").href = `/api/v1/open/sprint${query}`;
  const rows = await (await fetch(`/api/v1/open/sprint/ranking${query}`)).json();
  $("ranking").tBodies[0].replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    for (const value of [r.rank, r.unit_name, num(r.received), num(r.resolved), pct(r.on_time_share),
      num(r.median_working_hours), num(r.p90_working_hours), num(r.overdue_now)]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }));
}

$("start").addEventListener("change", draw);
$("end").addEventListener("change", draw);
$("lang").addEventListener("click", () => {
  setLang(lang === "vi" ? "en" : "vi");
  $("lang").textContent = lang === "vi" ? "EN" : "VI";
  label();
  draw();
});
setLang(lang);
$("lang").textContent = lang === "vi" ? "EN" : "VI";
label();
await draw();
