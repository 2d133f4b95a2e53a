// Shared helpers of every studio page: JSON calls, formatting, the query string.
"use strict";
const studio = {
  async get(url) {
    const r = await fetch(url, {credentials: "same-origin"});
    const body = await r.json();
    if (!r.ok && r.status !== 422) throw new Error(body.error || r.statusText);
    return body;
  },
  async post(url, data) {
    const r = await fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(data || {})});
    const body = await r.json();
    if (!r.ok && r.status !== 422) throw new Error(body.error || r.statusText);
    return body;
  },
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : String(c));
    return e;
  },
  num(v) {
    if (typeof v !== "number") return v === null || v === undefined ? "" : String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toFixed(4);
  },
  age(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    if (s < 86400) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  },
  runUrl(name) { return "/run/" + name.split("/").map(encodeURIComponent).join("/"); },
  apiRun(name) { return "/api/runs/" + name.split("/").map(encodeURIComponent).join("/"); },
  param(k) { return new URLSearchParams(location.search).get(k) || ""; },
  badge(status) { return studio.el("span", {class: "badge " + status, text: status}); },
};
