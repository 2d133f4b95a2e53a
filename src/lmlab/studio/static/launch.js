// The launch form: fields from the stage's Config, checked by the server (the CLI's messages).
"use strict";
let form = null;

async function loadStages() {
  const data = await studio.get("/api/stages");
  const sel = document.getElementById("stage");
  sel.replaceChildren(...data.stages.map(s => studio.el("option", {value: s.name, text: s.name})));
  sel.dataset.recipes = JSON.stringify(Object.fromEntries(data.stages.map(s => [s.name, s.recipes])));
  sel.value = studio.param("stage") || "sft";
  await pickStage(studio.param("recipe"));
}

async function pickStage(recipe) {
  const stage = document.getElementById("stage").value;
  const recipes = JSON.parse(document.getElementById("stage").dataset.recipes)[stage] || [];
  const rs = document.getElementById("recipe");
  rs.replaceChildren(studio.el("option", {value: "", text: "(defaults)"}),
                     ...recipes.map(r => studio.el("option", {value: r, text: r})));
  rs.value = recipes.includes(recipe) ? recipe : "";
  await loadForm();
}

function input(f) {
  let e;
  if (f.kind === "select") {
    e = studio.el("select", {}, ...f.choices.map(c => studio.el("option", {value: c, text: c})));
    e.value = f.value;
  } else if (f.kind === "checkbox") {
    e = studio.el("input", {type: "checkbox"}); e.checked = f.value === "true";
  } else {
    e = studio.el("input", {type: "text", value: f.value, placeholder: f.default});
  }
  e.id = "f-" + f.key; e.name = f.key;
  return e;
}

async function loadForm() {
  const stage = document.getElementById("stage").value, recipe = document.getElementById("recipe").value;
  form = await studio.get("/api/form/" + stage + (recipe ? "?recipe=" + encodeURIComponent(recipe) : ""));
  document.getElementById("stage-help").textContent = form.help;
  const cells = [];
  for (const f of form.fields) {
    let bounds = "";
    if (f.min !== null) bounds += (f.min_exclusive ? " > " : " >= ") + f.min;
    if (f.max !== null) bounds += " <= " + f.max;
    cells.push(studio.el("label", {for: "f-" + f.key, text: f.key}), input(f),
      studio.el("span", {class: "help"}, f.type + (bounds ? " (" + bounds.trim() + ")" : "") +
        " - " + f.help + (f.default !== "" ? "; default " + f.default : ""),
        studio.el("span", {class: "error", id: "err-" + f.key})));
  }
  document.getElementById("fields").replaceChildren(...cells);
  document.getElementById("general").textContent = "";
}

function values() {
  const out = {};
  for (const f of form.fields) {
    const e = document.getElementById("f-" + f.key);
    out[f.key] = f.kind === "checkbox" ? (e.checked ? "true" : "false") : e.value;
  }
  return out;
}

function showErrors(r) {
  for (const f of form.fields) {
    const msgs = r.errors[f.key] || [];
    document.getElementById("err-" + f.key).textContent = msgs.join("; ");
    document.getElementById("f-" + f.key).classList.toggle("bad", msgs.length > 0);
  }
  const unknown = Object.entries(r.errors).filter(([k]) => !form.fields.some(f => f.key === k));
  document.getElementById("general").textContent =
    [...r.general, ...unknown.flatMap(([, m]) => m)].join("; ");
  const argv = Object.entries(r.overrides).map(([k, v]) => k + "=" + v);
  document.getElementById("command").textContent = "lmlab " + form.stage + " " + argv.join(" ");
}

async function send(what) {
  const r = await studio.post("/api/" + what + "/" + form.stage, {values: values()});
  showErrors(r);
  if (r.job) refreshJobs();
  return r;
}

function jobRow(j) {
  const stop = studio.el("button", {class: "stop", text: "Stop"});
  stop.onclick = async () => { await studio.post("/api/jobs/" + j.id + "/stop"); refreshJobs(); };
  const resume = studio.el("button", {class: "resume", text: "Resume"});
  resume.onclick = async () => { await studio.post("/api/jobs/" + j.id + "/resume"); refreshJobs(); };
  const active = ["queued", "running", "stopping"].includes(j.status);
  const name = j.run ? j.run.split("/").pop() : "";
  return studio.el("tr", {"data-job": j.id, "data-status": j.status},
    studio.el("td", {title: j.command, text: j.id}), studio.el("td", {}, studio.badge(j.status)),
    studio.el("td", {}, name ? studio.el("a", {href: studio.runUrl(name), text: name}) : ""),
    studio.el("td", {}, studio.el("code", {text: j.progress})),
    studio.el("td", {}, active ? stop : (j.status === "finished" ? "" : resume)));
}

async function refreshJobs() {
  const data = await studio.get("/api/jobs");
  document.querySelector("#jobs tbody").replaceChildren(...data.jobs.map(jobRow));
}

document.getElementById("stage").onchange = () => pickStage("");
document.getElementById("recipe").onchange = loadForm;
document.getElementById("check").onclick = () => send("check");
document.getElementById("launch").onclick = () => send("launch");
loadStages().catch(e => { document.getElementById("general").textContent = e.message; });
refreshJobs();
setInterval(refreshJobs, 1000);
