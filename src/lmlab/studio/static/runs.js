// The runs table: refreshed every 2 s; tick runs to compare them.
"use strict";
const picked = new Set(studio.param("compare").split(",").filter(Boolean));

function runRow(r) {
  const box = studio.el("input", {type: "checkbox", "data-run": r.name});
  box.checked = picked.has(r.name);
  box.onchange = () => { box.checked ? picked.add(r.name) : picked.delete(r.name); showPicked(); };
  const steps = r.steps === null ? "" : r.steps + (r.max_steps ? " / " + r.max_steps : "");
  const metric = r.metric ? r.metric.key + " " + studio.num(r.metric.value) : "";
  const tr = studio.el("tr", {"data-run": r.name, "data-status": r.status},
    studio.el("td", {}, box),
    studio.el("td", {}, studio.el("a", {href: studio.runUrl(r.name), text: r.name})),
    studio.el("td", {text: r.stage}), studio.el("td", {text: r.model}),
    studio.el("td", {}, studio.badge(r.status)),
    studio.el("td", {class: "num", text: steps}), studio.el("td", {text: metric}),
    studio.el("td", {class: "num", text: studio.age(r.age_s)}),
    studio.el("td", {class: "problem", text: r.problem}));
  return tr;
}

function showPicked() {
  const b = document.getElementById("compare");
  b.disabled = picked.size < 2;
  b.textContent = "Compare selected (" + picked.size + ")";
}

async function refresh() {
  try {
    const data = await studio.get("/api/runs");
    const body = document.querySelector("#runs tbody");
    body.replaceChildren(...data.rows.map(runRow));
    document.getElementById("count").textContent = data.rows.length + " runs";
  } catch (e) {
    document.getElementById("count").textContent = "cannot list the runs: " + e.message;
  }
}

document.getElementById("compare").onclick = () => {
  location.href = "/compare?runs=" + [...picked].map(encodeURIComponent).join(",");
};
showPicked();
refresh();
setInterval(refresh, 2000);
