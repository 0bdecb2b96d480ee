// blacksoil console: polls /v1/console/<view> and renders cards, charts (Chart.js) and tables.
"use strict";
const VIEWS = ["serving", "agents", "experience", "learning", "scheduling", "agentscore"];
const POLL_MS = 2000;
const charts = {};
let current = null, timer = null;

function apiKey() { return new URLSearchParams(location.search).get("key") || localStorage.getItem("bs-key") || ""; }
function headers() { const k = apiKey(); return k ? { "Authorization": "Bearer " + k } : {}; }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function fmt(v) {
  if (v == null) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString("en-US") : v.toLocaleString("en-US", { maximumFractionDigits: 3 });
  return String(v);
}

function renderCards(root, cards) {
  const box = el("div", { class: "cards", "data-testid": "cards" });
  for (const c of cards || []) box.append(el("div", { class: "card", "data-metric": c.id || c.label },
    el("div", { class: "label" }, c.label), el("div", { class: "value" }, fmt(c.value))));
  root.append(box);
}

function chartConfig(spec) {
  const scales = {};
  if (spec.type === "scatter") {
    scales.x = { title: { display: true, text: spec.x_label || "" }, ticks: { color: "#94a79c" } };
    scales.y = { title: { display: true, text: spec.y_label || "" }, ticks: { color: "#94a79c" } };
  } else {
    scales.x = { stacked: !!spec.stacked, ticks: { color: "#94a79c", maxTicksLimit: 10 } };
    scales.y = { stacked: !!spec.stacked, beginAtZero: true, title: { display: !!spec.y_label, text: spec.y_label || "" }, ticks: { color: "#94a79c" } };
  }
  return {
    type: spec.type === "area" ? "line" : spec.type,
    data: { labels: spec.labels || [], datasets: (spec.datasets || []).map(d => ({ ...d, fill: spec.type === "area" ? (d.fill ?? "origin") : d.fill, pointRadius: spec.type === "scatter" ? 5 : ((spec.labels || []).length < 30 ? 3 : 0), tension: 0.2 })) },
    options: { animation: false, responsive: true, maintainAspectRatio: false, scales, plugins: { legend: { labels: { color: "#e6efe9" } } } },
  };
}

function renderCharts(root, specs) {
  const grid = el("div", { class: "grid" });
  for (const s of specs || []) {
    const canvas = el("canvas", { id: "chart-" + s.id });
    grid.append(el("div", { class: "panel", "data-chart": s.id }, el("h2", {}, s.title), canvas));
    if (charts[s.id]) charts[s.id].destroy();
    charts[s.id] = new Chart(canvas, chartConfig(s));
  }
  root.append(grid);
}

function renderTables(root, tables) {
  for (const t of tables || []) {
    const panel = el("div", { class: "panel", "data-table": t.id }, el("h2", {}, t.title));
    if (!t.rows || !t.rows.length) { panel.append(el("div", { class: "empty" }, t.empty || "nothing yet")); root.append(panel); continue; }
    const table = el("table", {}, el("tr", {}, ...t.columns.map(c => el("th", {}, c))));
    for (const r of t.rows) {
      const tr = el("tr", {});
      r.forEach((v, i) => {
        if (v && typeof v === "object" && v.action) {
          tr.append(el("td", {}, ...v.action.map(a => el("button", { class: a.kind, "data-action": a.kind, onclick: () => act(a) }, a.label))));
        } else {
          const cls = (t.columns[i] === "verdict" ? "verdict-" + v : "") + (typeof v === "number" ? " num" : "");
          tr.append(el("td", { class: cls.trim() }, fmt(v)));
        }
      });
      table.append(tr);
    }
    panel.append(table); root.append(panel);
  }
}

async function act(a) {
  const res = await fetch(a.url, { method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify(a.body || {}) });
  const out = await res.json().catch(() => ({}));
  document.getElementById("status").textContent = res.ok ? (a.done || "done") : ("error: " + ((out.error || {}).message || res.status));
  refresh();
}

async function refresh() {
  if (!current) return;
  const status = document.getElementById("status");
  try {
    const res = await fetch("/v1/console/" + current, { headers: headers() });
    const data = await res.json();
    if (!res.ok) throw new Error((data.error || {}).message || res.status);
    const root = document.getElementById("view");
    root.replaceChildren();
    root.setAttribute("data-view", current);
    renderCards(root, data.cards);
    renderCharts(root, data.charts);
    renderTables(root, data.tables);
    status.textContent = "updated " + new Date().toLocaleTimeString() + (data.tenant ? " · tenant " + data.tenant : "");
    document.body.setAttribute("data-ready", current);
  } catch (e) {
    status.textContent = "error: " + e.message;
    status.className = "error";
  }
}

function show(view) {
  current = VIEWS.includes(view) ? view : "serving";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === current);
  document.body.removeAttribute("data-ready");
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, POLL_MS);
}

window.addEventListener("hashchange", () => show(location.hash.slice(1)));
window.addEventListener("DOMContentLoaded", () => {
  const k = new URLSearchParams(location.search).get("key");
  if (k) localStorage.setItem("bs-key", k);
  show(location.hash.slice(1));
});
