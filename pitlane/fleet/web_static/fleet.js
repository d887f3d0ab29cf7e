// pitlane fleet page: polls /api/cars every second, draws the selected car's history as SVG sparklines from
// /api/cars/<name>/history and lists the data bundles from /api/tubs. No framework, no CDN.
"use strict";

const POLL_MS = 1000;
const HISTORY_MS = 5000;
const TUBS_MS = 10000;
const FIGURES = [
  ["loop_hz", "loop rate", "Hz"], ["pilot_p50", "pilot p50", "ms"], ["pilot_p99", "pilot p99", "ms"],
  ["backlog", "spool backlog", "records"], ["tub_backlog", "tub backlog", "records"], ["drift", "drift score", ""],
  ["disk_free_mb", "disk free", "MB"], ["cte_mean", "twin CTE mean", "m"],
];
let selected = decodeURIComponent((location.hash.match(/car=([^&]+)/) || [])[1] || "");

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child));
  return node;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 2) return "now";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

const num = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const short = (digest) => (digest ? digest.replace("sha256:", "").slice(0, 12) : "–");

function modelText(running) {
  if (!running || !running.digest) return "none";
  const serial = running.serial === null || running.serial === undefined ? "" : ` #${running.serial}`;
  return `${short(running.digest)}${serial} ${running.state || ""}`.trim();
}

function carRow(car) {
  const state = !car.last_seen ? "" : car.healthy ? "ok" : car.online ? "bad" : "off";
  const m = car.model;
  const desired = m.desired ? short(m.desired.split("@").pop()) : "none";
  const backlog = car.backlog ? `${car.backlog.records} rec · ${car.backlog.tubs} tubs` : "–";
  const drift = car.drift ? `${num(car.drift.score, 2)}${car.drift.baseline === "none" ? " (no baseline)" : ""}` : "–";
  const clock = car.clock_offset_s === null ? "–" : `${car.clock_offset_s > 0 ? "-" : "+"}${num(Math.abs(car.clock_offset_s))} s`;
  const ev = car.last_event ? `${car.last_event.type} · ${ago(car.last_event.age_s)}` : "–";
  const row = el(
    "tr", { class: `car${car.name === selected ? " selected" : ""}`, "data-car": car.name },
    el("td", { class: "name" }, el("span", { class: `dot ${state}` }), car.name),
    el("td", { class: car.online ? "" : "warn", "data-field": "last-seen" }, ago(car.age_s)),
    el("td", { class: "mono", "data-field": "model" }, modelText(m.running)),
    el("td", { class: "mono", "data-field": "desired" }, desired),
    el("td", { class: m.differs ? "bad" : "dim", "data-field": "differs" }, m.differs ? duration(m.differs_for_s) : "same"),
    el("td", { "data-field": "loop" }, car.loop_hz === null ? "–" : `${num(car.loop_hz)} Hz`),
    el("td", { "data-field": "pilot" }, `${num(car.pilot_ms.p50)} / ${num(car.pilot_ms.p99)} ms`),
    el("td", { class: car.watchdog_stops ? "warn" : "", "data-field": "stops" }, String(car.watchdog_stops)),
    el("td", { "data-field": "backlog" }, backlog),
    el("td", { "data-field": "drift" }, drift),
    el("td", { class: car.clock_ok ? "" : "bad", "data-field": "clock" }, clock),
    el("td", { "data-field": "event" }, ev),
  );
  row.addEventListener("click", () => select(car.name));
  return row;
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${url}: ${resp.status}`);
  return resp.json();
}

async function pollCars() {
  try {
    const doc = await getJSON("/api/cars");
    const body = $("cars").tBodies[0];
    body.replaceChildren(...doc.cars.map(carRow));
    $("empty").hidden = doc.cars.length > 0;
    const healthy = doc.cars.filter((c) => c.healthy).length;
    $("summary").textContent = `${healthy}/${doc.cars.length} healthy`;
    $("summary").className = `badge ${healthy === doc.cars.length ? "ok" : "bad"}`;
    const refused = Object.entries(doc.refused).map(([k, v]) => `${k} ${v}`).join(", ");
    $("refused").textContent = refused ? `refused messages: ${refused}` : "";
    $("link").textContent = "live";
    $("link").className = "badge ok";
  } catch (err) {
    $("link").textContent = "NUC unreachable";
    $("link").className = "badge bad";
  }
}

function sparkline(points, key) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 300 70");
  svg.setAttribute("preserveAspectRatio", "none");
  const values = points.filter((p) => p[key] !== null && p[key] !== undefined);
  if (values.length < 1) return svg;
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
  let lo = Math.min(...values.map((p) => p[key])), hi = Math.max(...values.map((p) => p[key]));
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", values.map((p) =>
    `${((p.t - t0) / (t1 - t0) * 300).toFixed(1)},${(66 - (p[key] - lo) / (hi - lo) * 62).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

async function drawHistory() {
  if (!selected) { $("history").hidden = true; return; }
  try {
    const doc = await getJSON(`/api/cars/${encodeURIComponent(selected)}/history?seconds=3600&points=300`);
    $("history").hidden = false;
    $("history-car").textContent = selected;
    $("plots").replaceChildren(...FIGURES.map(([key, label, unit]) => {
      const last = [...doc.points].reverse().find((p) => p[key] !== null && p[key] !== undefined);
      return el("div", { class: "plot", "data-figure": key },
        el("div", { class: "label" }, label, el("b", {}, last ? `${num(last[key], 2)} ${unit}` : "–")),
        sparkline(doc.points, key));
    }));
  } catch (err) {
    $("history").hidden = true;
  }
}

function select(name) {
  selected = name;
  location.hash = `car=${encodeURIComponent(name)}`;
  for (const row of $("cars").tBodies[0].rows) row.classList.toggle("selected", row.dataset.car === name);
  drawHistory();
}

async function pollTubs() {
  try {
    const doc = await getJSON("/api/tubs");
    $("tubs").tBodies[0].replaceChildren(...doc.tubs.map((t) => el("tr", {},
      el("td", {}, t.car), el("td", {}, t.session || "–"), el("td", {}, String(t.records)),
      el("td", {}, t.start ? new Date(t.start * 1000).toLocaleString() : "–"), el("td", {}, short(t.model)),
      el("td", {}, t.ref))));
  } catch (err) { /* the cars' poll shows the link state */ }
}

pollCars();
drawHistory();
pollTubs();
setInterval(pollCars, POLL_MS);
setInterval(drawHistory, HISTORY_MS);
setInterval(pollTubs, TUBS_MS);
