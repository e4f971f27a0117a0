// kiln's build history page: a list of recent builds (filtered, paged) and
// one build's facts, step waterfall and log. Everything a build says (its
// image, log, error) is tenant text: it only ever becomes DOM text, never
// markup.
"use strict";

const app = document.getElementById("app");
const PAGE = 50;

/** An element with attributes (`class`, `href`, `id`, ...) and children (nodes or text). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  app.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
}

async function api(path) {
  const resp = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (resp.status === 401) throw new Error("The session has expired: run `kiln ui` for a new login link.");
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || resp.status + " " + resp.statusText);
  return body;
}

function seconds(s) {
  return (s || 0).toFixed(2) + " s";
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

/** The list's filters and page, from the hash (`#/?image=..&result=..&before=..`). */
function listQuery() {
  const query = location.hash.split("?")[1] || "";
  return new URLSearchParams(query);
}

function listHash(params) {
  const kept = new URLSearchParams();
  for (const [k, v] of params) if (v) kept.set(k, v);
  const text = kept.toString();
  return "#/" + (text ? "?" + text : "");
}

function filterForm(query) {
  const image = el("input", { id: "filter-image", type: "search", placeholder: "image contains…", value: query.get("image") || "" });
  const result = el("select", { id: "filter-result" });
  for (const [value, label] of [["", "any result"], ["success", "success"], ["failed", "not success"], ["failure", "failure"], ["rejected", "rejected"], ["cancelled", "cancelled"], ["abandoned", "abandoned"]]) {
    const option = el("option", { value }, label);
    if ((query.get("result") || "") === value) option.selected = true;
    result.append(option);
  }
  const form = el("form", { class: "filters" }, image, result, el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = listHash([["image", image.value.trim()], ["result", result.value]]);
  });
  result.addEventListener("change", () => form.requestSubmit());
  return form;
}

function buildRow(b) {
  const link = el("a", { href: "#/builds/" + b.seq }, "#" + b.seq);
  const row = el("tr", { class: "build " + b.result, "data-seq": b.seq },
    el("td", {}, link),
    el("td", {}, b.time),
    el("td", { class: "result " + b.result }, b.result),
    el("td", { class: "num" }, seconds(b.duration)),
    el("td", { class: "num" }, b.cache_hits + "/" + b.steps),
    el("td", { class: "image" }, b.image, b.error ? el("div", { class: "error-text" }, b.error) : null));
  row.addEventListener("click", (event) => {
    if (event.target.tagName !== "A") location.hash = "#/builds/" + b.seq;
  });
  return row;
}

async function showList() {
  const query = listQuery();
  const params = new URLSearchParams({ limit: String(PAGE) });
  for (const key of ["image", "result", "before"]) if (query.get(key)) params.set(key, query.get(key));
  const page = await api("../builds?" + params);
  document.getElementById("total").textContent = page.total + " builds in the history";
  const head = el("tr", {}, el("th", {}, "build"), el("th", {}, "arrived (UTC)"), el("th", {}, "result"),
    el("th", { class: "num" }, "time"), el("th", { class: "num" }, "cached"), el("th", {}, "image"));
  const table = el("table", { id: "builds" }, el("thead", {}, head), el("tbody", {}, ...page.builds.map(buildRow)));
  const nav = el("nav", { class: "pages" });
  if (query.get("before")) nav.append(el("a", { href: listHash([["image", query.get("image")], ["result", query.get("result")]]) }, "« newest"));
  if (page.next) nav.append(el("a", { id: "older", href: listHash([["image", query.get("image")], ["result", query.get("result")], ["before", page.next]]) }, "older »"));
  const empty = page.builds.length ? null : el("p", { class: "muted" }, "No builds match.");
  show(filterForm(query), table, empty, nav);
  performance.mark("kiln-list-rendered");
}

function waterfall(build) {
  const end = Math.max(build.duration || 0, ...build.steps.map((s) => s.start + s.duration), 0.001);
  const rows = build.steps.map((step) => {
    const state = step.unfinished ? "unfinished" : step.cached ? "cached" : "ran";
    const bar = el("div", { class: "bar", title: step.name });
    bar.style.left = (100 * step.start / end).toFixed(3) + "%";
    bar.style.width = Math.max(0.3, 100 * step.duration / end).toFixed(3) + "%";
    if (step.queued > 0 && step.duration > 0) {
      const wait = el("div", { class: "queued", title: "waited " + seconds(step.queued) + " for a run slot" });
      wait.style.width = (100 * step.queued / step.duration).toFixed(3) + "%";
      bar.append(wait);
    }
    const ran = step.cached ? "cached" : seconds(step.duration) + (step.queued > 0.005 ? " (" + seconds(step.queued) + " queued)" : "");
    const label = step.unfinished ? "failed here" : ran;
    return el("div", { class: "step " + state, "data-line": step.line },
      el("span", { class: "name", title: step.name }, step.name), el("div", { class: "track" }, bar), el("span", { class: "time" }, label));
  });
  const scale = el("div", { class: "muted" }, "0 s → " + seconds(end) + " from the request's arrival; grey: cached, light: waiting for a run slot, red: where the build ended");
  return el("section", { id: "waterfall" }, el("h3", {}, "Steps"), scale, ...rows);
}

/** The log, with the failing step's lines marked from the line that started it. */
function logView(build) {
  const failing = build.steps.find((s) => s.unfinished);
  let inFailingStep = false;
  const lines = build.log.map((text) => {
    const starts = failing && text.endsWith(" " + failing.name);
    if (starts) inFailingStep = true;
    const cls = starts ? "line failing-start" : inFailingStep || /\bERROR\b/.test(text) ? "line failing" : "line";
    return el("span", { class: cls }, text);
  });
  return el("section", {}, el("h3", {}, "Log"), el("pre", { id: "log" }, ...lines));
}

function facts(build) {
  const rows = [
    ["image", build.image],
    ["digest", build.digest ? el("code", { id: "digest" }, build.image.replace(/:[^/:@]+$/, "") + "@" + build.digest) : "—"],
    ["request id", el("span", {}, el("code", { id: "request-id" }, build.request_id), el("span", { class: "muted" }, " (the audit line's request_id, the reply's X-Request-Id)"))],
    ["arrived", build.time],
    ["time", seconds(build.duration) + " (" + seconds(build.queued) + " before the first step)"],
    ["cache", build.cache_hits + " cached, " + build.cache_misses + " ran"],
    ["transfer", bytes(build.pulled_bytes) + " pulled, " + bytes(build.pushed_bytes) + " pushed"],
    ["raw", el("a", { href: "../builds/" + build.seq }, "JSON")],
  ];
  const list = el("dl", { class: "facts" });
  for (const [name, value] of rows) list.append(el("dt", {}, name), el("dd", {}, value));
  return list;
}

function errorBox(build) {
  if (!build.error) return null;
  const line = build.error_line ? el("p", { id: "failing-line" }, "Dockerfile line " + build.error_line) : null;
  return el("div", { id: "error" }, line, el("div", { class: "error-text" }, build.error));
}

/** The audit line this build wrote, as it is in the audit log. */
function auditView(build) {
  if (!build.audit) return null;
  return el("details", { id: "audit-line" }, el("summary", {}, "Audit line (request_id " + build.request_id + ")"),
    el("pre", {}, JSON.stringify(build.audit, null, 1)));
}

async function showBuild(id) {
  const build = await api("../builds/" + encodeURIComponent(id));
  const title = el("h2", {}, "Build #" + build.seq + " ", el("span", { class: "result " + build.result }, build.result));
  const omitted = build.log_omitted ? el("p", { class: "muted" }, build.log_omitted + " log lines were left out of the history") : null;
  show(el("p", {}, el("a", { href: "#/" }, "« all builds")), title, facts(build), errorBox(build), waterfall(build),
    logView(build), omitted, auditView(build));
}

async function route() {
  const match = location.hash.match(/^#\/builds\/([^?]+)/);
  try {
    if (match) await showBuild(decodeURIComponent(match[1]));
    else await showList();
  } catch (err) {
    show(el("p", { id: "failure", class: "error-text" }, err.message));
  }
}

window.addEventListener("hashchange", route);
route();
