/* What lmlab studio's chat, arena and deploy pages share: element lookup, JSON calls (with the
   studio's token when one is set: ?token=... once, then kept in this browser), the model
   suggestions and the decoding knobs. */
"use strict";
const $ = (id) => document.getElementById(id);

(function keepToken() {
  const t = new URLSearchParams(location.search).get("token");
  if (t) localStorage.setItem("lmlab_studio_token", t);
})();

function headers() {
  const h = { "Content-Type": "application/json" };
  const t = localStorage.getItem("lmlab_studio_token");
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

async function failure(r) {
  const j = await r.json().catch(() => ({}));
  const d = j.detail !== undefined ? j.detail : j.error;
  return new Error(typeof d === "string" ? d : (d ? JSON.stringify(d) : "HTTP " + r.status));
}

async function api(url, body) {
  const r = await fetch(url, body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!r.ok) throw await failure(r);
  return r.json();
}

async function fillModels(listId) {   // <datalist> of base + the runs with a saved model
  try {
    const j = await api("/api/models");
    $(listId).innerHTML = "";
    for (const m of j.models) { const o = document.createElement("option"); o.value = m; $(listId).appendChild(o); }
    return j;
  } catch (e) { return null; }
}

function showKnobs() {
  for (const id of ["temperature", "top_p"]) {
    const show = () => { $(id + "-v").textContent = $(id).value; };
    $(id).addEventListener("input", show); show();
  }
}

function knobs() {
  const k = { temperature: Number($("temperature").value), top_p: Number($("top_p").value),
              max_tokens: Number($("max_tokens").value) || 128 };
  if ($("seed").value !== "") k.seed = Number($("seed").value);
  return k;
}

function bubble(parent, role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  parent.appendChild(div);
  parent.scrollTop = parent.scrollHeight;
  return div;
}
