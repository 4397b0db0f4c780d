// Tiny DOM helpers. Text is always set with textContent, never parsed as HTML.

/**
 * Creates an element: h("button", {class: "x", onclick: fn, dataset: {id: 1}}, "text", child...).
 * Attributes starting with "on" become event listeners; false/null attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A yellow notice box. */
export function notice(text, testid) {
  return h("div", { class: "notice", "data-testid": testid || "notice" }, text);
}

/** Describes an ApiError for the operator, treating missing routes as "not available here yet". */
export function explain(err, what) {
  if (err && err.unavailable) {
    return notice(`${what} is not available on this server yet (${err.status} ${err.code}: ${err.message}).`, "unavailable");
  }
  return h("p", { class: "error", role: "alert" }, `${what} failed: ${err && err.message ? err.message : err}`);
}

export function pill(text, cls) {
  return h("span", { class: `pill ${cls || text}` }, text);
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtUsd(n) {
  if (n === null || n === undefined) return "—";
  return `$${Number(n).toFixed(n !== 0 && Math.abs(n) < 0.01 ? 6 : 2)}`;
}

/** A table from column specs [{label, value: row => node|text, num?}] and rows. */
export function table(columns, rows, { testid, rowAttrs } = {}) {
  return h("table", { "data-testid": testid },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : {},
      columns.map((c) => h("td", { class: c.num ? "num" : null }, c.value(r)))))));
}
