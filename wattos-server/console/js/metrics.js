// Reads the server's Prometheus exposition (/metrics, an operational route like /health) for the
// live figures that are not tenant data: breaker states and server-wide request counts.

import { get } from "./api.js";

/** Parses the Prometheus text format into samples [{name, labels: {..}, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[3]))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = Number(m[4]);
    if (!Number.isNaN(value)) out.push({ name: m[1], labels, value });
  }
  return out;
}

export async function fetchMetrics() {
  return parseMetrics(await get("/metrics", { auth: false }));
}

/** Sum of `name` samples grouped by `label`, e.g. requests by route. */
export function sumBy(samples, name, label, filter = () => true) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== name || !filter(s)) continue;
    const k = s.labels[label] ?? "";
    out.set(k, (out.get(k) || 0) + s.value);
  }
  return out;
}

const OPERATIONAL = /^\/(metrics|health|console)/;

/** API requests (operational routes and console files excluded) by route. */
export function apiRequestsByRoute(samples) {
  return sumBy(samples, "http_requests_total", "route", (s) => !OPERATIONAL.test(s.labels.route || ""));
}

/**
 * Keeps a rolling history of server-wide API request counts, sampled from /metrics while a page
 * that shows them is open. Module state, so the history survives page switches within the tab.
 */
const history = [];
let last = null;

export async function sampleTraffic() {
  const samples = await fetchMetrics();
  const byRoute = apiRequestsByRoute(samples);
  const total = [...byRoute.values()].reduce((a, b) => a + b, 0);
  const now = Date.now();
  if (last !== null) history.push([now, Math.max(0, total - last)]);
  last = total;
  while (history.length > 120) history.shift();
  return { samples, byRoute, total, history: [...history] };
}
