// Usage and cost of the caller's tenant over time, per model and per API key, from
// GET /v1/admin/usage (one report per time bucket, so any report shape with per-model figures
// gives a time series).

import { get, query } from "../api.js";
import { explain, fmtNum, fmtUsd, h, mount, table } from "../dom.js";
import { barChart, lineChart } from "../charts.js";

const RANGES = {
  "24h": { span: 24 * 3600e3, buckets: 12 },
  "7d": { span: 7 * 86400e3, buckets: 7 },
  "30d": { span: 30 * 86400e3, buckets: 15 },
};

async function report(since, until) {
  return get(`/v1/admin/usage${query({ since_ms: Math.floor(since), until_ms: Math.floor(until) })}`);
}

function series(reports, pick, field) {
  const names = new Set();
  for (const { r } of reports) for (const m of pick(r)) names.add(m.name);
  return [...names].sort().map((name) => ({
    name,
    points: reports.map(({ at, r }) => [at, pick(r).filter((m) => m.name === name).reduce((a, m) => a + (m[field] || 0), 0)]),
  }));
}

const byModel = (r) => (r.models || []).map((m) => ({ ...m, name: m.model }));
const byKey = (r) => (r.keys || []).map((k) => ({ ...k, name: k.principal }));

async function draw(out, rangeId) {
  const { span, buckets } = RANGES[rangeId];
  const until = Date.now();
  const since = until - span;
  const step = span / buckets;
  mount(out, h("p", { class: "muted" }, "Loading…"));
  let total;
  try {
    total = await report(since, until);
  } catch (e) {
    mount(out, explain(e, "Usage reporting"),
      h("p", { class: "muted" }, "Server-wide request counts (no tenant detail) are on the Health page."));
    return;
  }
  const reports = await Promise.all(Array.from({ length: buckets }, (_, i) => {
    const a = since + i * step;
    return report(a, a + step).then((r) => ({ at: a + step, r }));
  }));
  const models = byModel(total);
  const keys = byKey(total);
  const cost = total.total_cost_usd ?? models.reduce((a, m) => a + (m.cost_usd || 0), 0);
  mount(out,
    h("p", { "data-testid": "usage-summary" },
      `Tenant total: ${fmtNum(models.reduce((a, m) => a + m.requests, 0))} requests, `,
      `${fmtNum(models.reduce((a, m) => a + m.input_tokens + m.output_tokens, 0))} tokens, ${fmtUsd(cost)}.`),
    h("div", { class: "grid" },
      h("div", { class: "card" }, lineChart(series(reports, byModel, "requests"), { title: "Requests per model", testid: "usage-requests" })),
      h("div", { class: "card" }, lineChart(series(reports, byModel, "cost_usd"), { title: "Cost per model (USD)", testid: "usage-cost", format: (v) => `$${+v.toPrecision(3)}` })),
      h("div", { class: "card" }, barChart(models.map((m) => ({ label: m.model, value: m.input_tokens + m.output_tokens })), { title: "Tokens per model", testid: "usage-tokens", colorBy: true })),
      h("div", { class: "card" }, keys.length
        ? lineChart(series(reports, byKey, "cost_usd"), { title: "Cost per API key (USD)", testid: "usage-keys", format: (v) => `$${+v.toPrecision(3)}` })
        : h("p", { class: "muted" }, "This server's usage report has no per-key figures."))),
    h("div", { class: "card" }, h("h2", {}, "Per model"), table([
      { label: "Model", value: (m) => m.model },
      { label: "Requests", num: true, value: (m) => fmtNum(m.requests) },
      { label: "Input tokens", num: true, value: (m) => fmtNum(m.input_tokens) },
      { label: "Output tokens", num: true, value: (m) => fmtNum(m.output_tokens) },
      { label: "Cost", num: true, value: (m) => fmtUsd(m.cost_usd) },
    ], models, { testid: "usage-models" })),
    keys.length ? h("div", { class: "card" }, h("h2", {}, "Per API key"), table([
      { label: "Key / principal", value: (k) => h("code", {}, k.principal) },
      { label: "Requests", num: true, value: (k) => fmtNum(k.requests) },
      { label: "Tokens", num: true, value: (k) => fmtNum(k.input_tokens + k.output_tokens) },
      { label: "Cost", num: true, value: (k) => fmtUsd(k.cost_usd) },
    ], keys, { testid: "usage-keys-table" })) : null);
}

export async function render(root, ctx) {
  const out = h("div");
  const range = h("select", { "data-testid": "usage-range", onchange: () => draw(out, range.value) },
    Object.keys(RANGES).map((r) => h("option", { value: r }, `last ${r}`)));
  root.append(
    h("div", { class: "row" }, h("label", {}, "Range", range),
      h("button", { type: "button", class: "secondary", "data-testid": "usage-refresh", onclick: () => draw(out, range.value) }, "Refresh"),
      h("span", { class: "muted" }, `Tenant ${ctx.session.tenant}`)),
    out);
  await draw(out, range.value);
}
