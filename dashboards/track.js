// Anyone with a tracking code follows the report: its state, the ward's public notes, the photos
// made public; and, once resolved, confirms it or says it is not fixed. No account, no contact.
import { label, lang, setLang, t, when } from "./report-words.js";

const $ = (id) => document.getElementById(id);
let current = null;

function show(r) {
  current = r;
  $("category").textContent = lang === "vi" ? r.category_name_vi : r.category_name_en;
  $("state").textContent = t(r.state);
  $("state").dataset.state = r.state;
  const hours = Math.abs(r.working_hours_left).toFixed(1);
  $("left").textContent = ["received", "accepted", "in_progress"].includes(r.state)
    ? ` · ${t(r.working_hours_left >= 0 ? "hours_left" : "overdue", { h: hours })}` : "";
  $("unit").textContent = r.unit_name;
  $("reporters").textContent = t("reporters", { n: r.reporters });
  $("deadline").textContent = when(r.deadline_at);
  $("answer").hidden = r.state !== "resolved";
  $("steps").replaceChildren(...r.steps.map((s) => {
    const li = document.createElement("li");
    li.textContent = `${when(s.at)} · ${t(`step_${s.step}`)}${s.note ? ` · ${s.note}` : ""}`;  // text, never HTML
    return li;
  }));
  $("photos").replaceChildren(...r.photos.map((p) => {
    const a = document.createElement("a");
    a.href = p.url;
    const img = document.createElement("img");
    img.src = p.thumbnail_url;
    img.alt = "";
    a.append(img);
    return a;
  }));
  $("ticket").hidden = false;
}

async function look(code) {
  $("error").textContent = "";
  const response = await fetch(`/api/v1/public/reports/${encodeURIComponent(code)}`);
  if (!response.ok) { $("ticket").hidden = true; $("error").textContent = t("not_found"); return; }
  show(await response.json());
  history.replaceState(null, "", `?code=${encodeURIComponent(code)}`);
}

async function answer(what) {
  const response = await fetch(`/api/v1/public/reports/${current.code}/${what}`, { method: "POST" });
  if (response.ok) show(await response.json());
}

$("look").addEventListener("submit", (e) => { e.preventDefault(); look($("code").value.trim().toUpperCase()); });
$("confirm").addEventListener("click", () => answer("confirm"));
$("dispute").addEventListener("click", () => answer("dispute"));
$("lang").addEventListener("click", () => {
  setLang(lang === "vi" ? "en" : "vi");
  $("lang").textContent = lang === "vi" ? "EN" : "VI";
  label();
  if (current) show(current);
});

setLang(lang);
$("lang").textContent = lang === "vi" ? "EN" : "VI";
label();
const code = new URLSearchParams(location.search).get("code");
if (code) { $("code").value = code; await look(code); }
