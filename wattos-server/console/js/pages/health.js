// Provider and dependency health (GET /health, polled) and circuit-breaker states plus
// server-wide request counts from /metrics. Both routes are operational and carry no tenant data.

import { explain, fmtNum, h, mount, pill, table } from "../dom.js";
import { barChart, lineChart } from "../charts.js";
import { sampleTraffic, sumBy } from "../metrics.js";

const BREAKER = ["closed", "half-open", "open"];
const POLL_MS = 5000;

async function healthReport() {
  // /health answers 503 with the same body when unhealthy.
  const resp = await fetch("/health", { cache: "no-store" });
  return resp.json();
}

function drawHealth(out, rep) {
  const comps = Object.entries(rep.components || {}).map(([name, c]) => ({ name, ...c }));
  mount(out,
    h("p", { "data-testid": "health-status" }, "Overall: ", pill(rep.status), " ",
      rep.ready ? pill("ready", "ok") : pill("not ready", "bad"), rep.draining ? pill("draining", "warn") : "",
      h("span", { class: "muted" }, ` version ${rep.version}, up ${fmtNum(rep.uptime_secs)} s`)),
    table([
      { label: "Component", value: (c) => h("code", {}, c.name) },
      { label: "Status", value: (c) => pill(c.status) },
      { label: "Critical", value: (c) => (c.critical ? "yes" : "no") },
      { label: "Latency", num: true, value: (c) => `${c.latency_ms} ms` },
      { label: "Detail", value: (c) => c.detail || "" },
    ], comps, { testid: "health-components" }));
}

function drawBreakers(out, samples) {
  const state = sumBy(samples, "circuit_breaker_state", "breaker");
  const trans = sumBy(samples, "circuit_breaker_transitions_total", "breaker");
  const rej = sumBy(samples, "circuit_breaker_rejections_total", "breaker");
  const names = [...new Set([...state.keys(), ...trans.keys()])].sort();
  if (names.length === 0) {
    mount(out, h("p", { class: "muted", "data-testid": "breakers-empty" }, "No circuit breaker has reported yet (they appear after the first provider call)."));
    return;
  }
  mount(out, table([
    { label: "Breaker", value: (n) => h("code", {}, n) },
    { label: "State", value: (n) => pill(BREAKER[state.get(n) ?? 0] || "unknown") },
    { label: "Transitions", num: true, value: (n) => fmtNum(trans.get(n) || 0) },
    { label: "Rejected calls", num: true, value: (n) => fmtNum(rej.get(n) || 0) },
  ], names, { testid: "breakers" }));
}

export async function render(root) {
  const healthOut = h("div");
  const breakersOut = h("div");
  const trafficOut = h("div", { class: "grid" });
  const stamp = h("span", { class: "muted", "data-testid": "health-updated" });
  root.append(
    h("p", {}, stamp),
    h("section", { class: "card" }, h("h2", {}, "Dependencies and providers"), healthOut),
    h("section", { class: "card" }, h("h2", {}, "Circuit breakers"), breakersOut),
    h("section", { class: "card" }, h("h2", {}, "Server-wide API traffic"),
      h("p", { class: "muted" }, "From /metrics: all tenants together, by route; no tenant detail."), trafficOut));
  let stopped = false;
  const tick = async () => {
    try {
      drawHealth(healthOut, await healthReport());
    } catch (e) {
      mount(healthOut, explain(e, "Health"));
    }
    try {
      const t = await sampleTraffic();
      drawBreakers(breakersOut, t.samples);
      const bars = [...t.byRoute.entries()].map(([label, value]) => ({ label, value })).sort((a, b) => b.value - a.value);
      mount(trafficOut,
        h("div", {}, lineChart([{ name: "API requests per poll interval", points: t.history }], { title: `Requests per ${POLL_MS / 1000} s`, testid: "traffic-rate", empty: "collecting…" })),
        h("div", {}, barChart(bars, { title: "API requests by route (since start)", testid: "traffic-by-route" })));
    } catch (e) {
      mount(breakersOut, explain(e, "Metrics"));
    }
    stamp.textContent = `Updated ${new Date().toISOString()} (every ${POLL_MS / 1000} s)`;
  };
  await tick();
  const timer = setInterval(() => { if (!stopped) tick(); }, POLL_MS);
  return () => { stopped = true; clearInterval(timer); };
}
