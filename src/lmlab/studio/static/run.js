// One run: live curves (metrics over server-sent events), config, summary, its job.
"use strict";
const NAME = document.getElementById("name").textContent;
const API = studio.apiRun(NAME);
let rows = [], offset = 0, jobId = null, drawPending = false;

function draw() {
  drawPending = false;
  const keys = metricKeys(rows);
  document.getElementById("plots").replaceChildren(
    ...keys.map(k => linePlot(k, [{name: NAME, points: seriesOf(rows, k)}])));
  const last = rows.length ? rows[rows.length - 1].step : "";
  const pts = document.getElementById("points");
  pts.textContent = rows.length + " rows" + (last !== "" ? ", last step " + last : "");
  pts.dataset.rows = String(rows.length);
}

function addRows(msg) {
  if (msg.reset) rows = [];
  rows.push(...msg.rows);
  offset = msg.offset;
  if (msg.problems.length) document.getElementById("problem").textContent = msg.problems[0];
  if (!drawPending) { drawPending = true; requestAnimationFrame(draw); }
}

function showRow(row) {
  const s = document.getElementById("status");
  s.className = "badge " + row.status; s.textContent = row.status;
  if (row.problem) document.getElementById("problem").textContent = row.problem;
  document.getElementById("resume").hidden =
    !(row.status === "interrupted" || row.status === "failed") || !row.checkpoint;
  const rep = document.getElementById("report");
  rep.hidden = !row.report; rep.href = "/report/" + NAME;
  if (row.job) { jobId = row.job.id; pollJob(); }  // (else keep a report job being shown)
}

async function pollJob() {
  if (!jobId) return;
  const j = await studio.get("/api/jobs/" + encodeURIComponent(jobId));
  const box = document.getElementById("job");
  box.hidden = false;
  document.getElementById("job-status").replaceChildren(studio.badge(j.status));
  document.getElementById("job-progress").textContent = j.progress;
  document.getElementById("stop").hidden = !["running", "queued", "stopping"].includes(j.status);
}

async function load() {
  let d;
  for (;;) {  // a job just launched: its folder appears once the stage has started
    try { d = await studio.get(API + "/details"); break; } catch (e) {
      document.getElementById("problem").textContent = e.message + " (waiting for it)";
      await new Promise(r => setTimeout(r, 1000));
    }
  }
  document.getElementById("problem").textContent = "";
  document.getElementById("where").textContent = d.path;
  if (d.problems.length) document.getElementById("problem").textContent = d.problems.join("; ");
  showRow(d.row);
  const cfg = document.getElementById("config");
  cfg.replaceChildren(...Object.entries(d.config).map(([k, v]) => studio.el("tr", {},
    studio.el("th", {text: k}), studio.el("td", {text: JSON.stringify(v)}))));
  document.getElementById("summary").textContent =
    d.summary ? JSON.stringify(d.summary, null, 2) : "(no summary.json yet)";
  document.getElementById("compare-link").href = "/?compare=" + encodeURIComponent(NAME);
  addRows(await studio.get(API + "/metrics?after=0"));
  const es = new EventSource(API + "/events?after=" + offset);
  es.addEventListener("rows", ev => addRows(JSON.parse(ev.data)));
  es.addEventListener("reset", () => { rows = []; });
  es.addEventListener("status", ev => showRow(JSON.parse(ev.data)));
}

document.getElementById("stop").onclick = async () => {
  if (jobId) { await studio.post("/api/jobs/" + encodeURIComponent(jobId) + "/stop"); pollJob(); }
};
document.getElementById("resume").onclick = async () => {
  const r = await studio.post(API + "/resume");
  if (r.error) { document.getElementById("problem").textContent = r.error; return; }
  jobId = r.job.id; document.getElementById("resume").hidden = true; pollJob();
};
document.getElementById("make-report").onclick = async () => {
  const r = await studio.post(API + "/report");
  jobId = r.job.id; pollJob();
};
setInterval(pollJob, 1000);
load().catch(e => { document.getElementById("problem").textContent = e.message; });
