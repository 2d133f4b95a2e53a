// A small hand-written SVG line plot: x = step, one line per series, axes with a few ticks.
"use strict";
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"];

function tickText(t) {
  return t !== 0 && Math.abs(t) < 1e-3 ? t.toExponential(1) : String(+t.toPrecision(4));
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

// series: [{name, points: [[x, y], ...]}]; returns the <svg> element
function linePlot(title, series, w = 360, h = 200) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  svg.setAttribute("class", "plot"); svg.dataset.key = title;
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e); return e;
  };
  const pts = series.flatMap(s => s.points).filter(p => Number.isFinite(p[1]));
  add("text", {x: 8, y: 13, "font-weight": "bold"}, title);
  svg.dataset.points = String(pts.length);
  if (!pts.length) return svg;
  const L = 52, R = 10, T = 22, B = 22;
  let [x0, x1] = [Math.min(...pts.map(p => p[0])), Math.max(...pts.map(p => p[0]))];
  let [y0, y1] = [Math.min(...pts.map(p => p[1])), Math.max(...pts.map(p => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const X = x => L + (x - x0) / (x1 - x0) * (w - L - R);
  const Y = y => h - B - (y - y0) / (y1 - y0) * (h - T - B);
  add("rect", {x: L, y: T, width: w - L - R, height: h - T - B, fill: "none", stroke: "#ccc"});
  for (const t of niceTicks(y0, y1, 4)) {
    add("line", {x1: L, x2: w - R, y1: Y(t), y2: Y(t), stroke: "#eee"});
    add("text", {x: L - 4, y: Y(t) + 3, "text-anchor": "end"}, tickText(t));
  }
  for (const t of niceTicks(x0, x1, 5)) {
    add("text", {x: X(t), y: h - 8, "text-anchor": "middle"}, tickText(t));
  }
  series.forEach((s, i) => {
    const good = s.points.filter(p => Number.isFinite(p[1]));
    if (!good.length) return;
    const d = good.map((p, j) => (j ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1));
    add("path", {d: d.join(" "), fill: "none", stroke: COLORS[i % COLORS.length],
                 "stroke-width": 1.5, "data-series": s.name});
    if (good.length === 1) {
      add("circle", {cx: X(good[0][0]), cy: Y(good[0][1]), r: 2.5, fill: COLORS[i % COLORS.length]});
    }
    if (series.length > 1) {
      add("text", {x: w - R - 4, y: T + 12 + 12 * i, "text-anchor": "end",
                   fill: COLORS[i % COLORS.length]}, s.name);
    }
  });
  return svg;
}

// the numeric keys of metrics rows, the loss first
function metricKeys(rows) {
  const keys = new Set();
  for (const r of rows) for (const [k, v] of Object.entries(r)) {
    if (k !== "step" && typeof v === "number") keys.add(k);
  }
  const first = ["eval/loss", "train/loss"];
  return [...keys].sort((a, b) => (first.includes(b) - first.includes(a)) || a.localeCompare(b));
}

function seriesOf(rows, key) {
  return rows.filter(r => typeof r[key] === "number").map((r, i) => [r.step ?? i, r[key]]);
}
