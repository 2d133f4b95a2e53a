// Several runs: overlaid curves, the config keys that differ, summary numbers side by side.
"use strict";
const NAMES = studio.param("runs").split(",").filter(Boolean);
let cmp = null;

function table(id, head, rows) {
  document.getElementById(id).replaceChildren(
    studio.el("tr", {}, ...head.map(h => studio.el("th", {text: h}))), ...rows);
}

function drawTables() {
  const all = document.getElementById("all-keys").checked;
  table("diff", ["key", ...NAMES], cmp.config_diff.filter(r => all || !r.same).map(r =>
    studio.el("tr", {class: r.same ? "" : "diff"}, studio.el("th", {text: r.key}),
      ...r.values.map(v => studio.el("td", {text: v === undefined ? "" : JSON.stringify(v)})))));
  table("numbers", ["summary", ...NAMES], cmp.summary.map(r =>
    studio.el("tr", {}, studio.el("th", {text: r.key}),
      ...r.values.map(v => studio.el("td", {class: "num", text: studio.num(v)})))));
}

async function load() {
  document.getElementById("names").textContent = NAMES.join(" vs ");
  if (NAMES.length < 1) {
    document.getElementById("problem").textContent = "pick runs on the Runs page";
    return;
  }
  cmp = await studio.get("/api/compare?runs=" + NAMES.map(encodeURIComponent).join(","));
  drawTables();
  const all = await Promise.all(NAMES.map(n => studio.get(studio.apiRun(n) + "/metrics?after=0")));
  const keys = metricKeys(all.flatMap(m => m.rows));
  document.getElementById("plots").replaceChildren(...keys.map(k =>
    linePlot(k, NAMES.map((n, i) => ({name: n, points: seriesOf(all[i].rows, k)})))));
}

document.getElementById("all-keys").onchange = () => cmp && drawTables();
load().catch(e => { document.getElementById("problem").textContent = e.message; });
