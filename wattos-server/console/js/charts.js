// Small SVG charts drawn by the console itself (no chart library, nothing loaded from elsewhere).
// Every chart root carries data-points and data-total attributes, so tests and operators can read
// the figures behind the picture.

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** "Nice" axis ticks for [0, max]. */
export function ticks(max, count = 4) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const out = [];
  for (let v = 0; v <= max + step * 0.001; v += step) out.push(+v.toPrecision(12));
  if (out[out.length - 1] < max) out.push(+(out[out.length - 1] + step).toPrecision(12));
  return out;
}

function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  if (a > 0 && a < 0.01) return v.toExponential(0);
  return `${+v.toFixed(2)}`;
}

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  const iso = d.toISOString();
  return spanMs > 2 * 86400e3 ? iso.slice(5, 10) : iso.slice(11, 16);
}

function frame(title, testid, total, points) {
  const wrap = document.createElement("div");
  wrap.className = "chart";
  if (testid) wrap.dataset.testid = testid;
  wrap.dataset.total = String(total);
  wrap.dataset.points = String(points);
  if (title) {
    const h = document.createElement("h3");
    h.textContent = title;
    wrap.append(h);
  }
  return wrap;
}

function legend(names) {
  const el = document.createElement("div");
  el.className = "legend";
  names.forEach((n, i) => {
    const item = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = `swatch s${i % 8}`;
    item.append(sw, document.createTextNode(n));
    el.append(item);
  });
  return el;
}

/**
 * A line chart of time series: series = [{name, points: [[timeMs, value], ...]}].
 * opts: {title, testid, format(value) -> string, width, height}.
 */
export function lineChart(series, opts = {}) {
  const W = opts.width || 640, H = opts.height || 220, L = 48, R = 12, T = 10, B = 24;
  const fmt = opts.format || compact;
  const all = series.flatMap((x) => x.points);
  const total = all.reduce((a, p) => a + p[1], 0);
  const wrap = frame(opts.title, opts.testid, total, all.length);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title || "chart" });
  wrap.append(svg);
  if (all.length === 0) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, opts.empty || "no data yet"));
    return wrap;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const span = Math.max(t1 - t0, 1);
  const yt = ticks(Math.max(...all.map((p) => p[1])));
  const ymax = yt[yt.length - 1] || 1;
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const grid = s("g", { class: "grid" });
  const axis = s("g", { class: "axis" });
  for (const v of yt) {
    grid.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    axis.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  const xticks = Math.min(6, new Set(all.map((p) => p[0])).size);
  for (let i = 0; i < xticks; i++) {
    const t = xticks === 1 ? t0 : t0 + (span * i) / (xticks - 1);
    axis.append(s("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, timeLabel(t, span)));
  }
  axis.append(s("line", { x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  svg.append(grid, axis);
  series.forEach((ser, i) => {
    const pts = [...ser.points].sort((a, b) => a[0] - b[0]);
    if (pts.length === 0) return;
    const d = pts.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    const g = s("g", { "data-series": ser.name });
    g.append(s("path", { d, class: `line s${i % 8}` }));
    for (const p of pts) {
      const c = s("circle", { cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 2.5, class: `s${i % 8}` });
      c.append(s("title", {}, `${ser.name} @ ${new Date(p[0]).toISOString()}: ${fmt(p[1])}`));
      g.append(c);
    }
    svg.append(g);
  });
  wrap.append(legend(series.map((x) => x.name)));
  return wrap;
}

/**
 * A horizontal bar chart: bars = [{label, value}]. opts: {title, testid, format}.
 */
export function barChart(bars, opts = {}) {
  const fmt = opts.format || compact;
  const total = bars.reduce((a, b) => a + b.value, 0);
  const wrap = frame(opts.title, opts.testid, total, bars.length);
  const W = opts.width || 640, row = 22, L = Math.min(260, 12 + 7 * Math.max(4, ...bars.map((b) => b.label.length))), R = 64;
  const H = Math.max(row * bars.length + 8, 40);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title || "chart" });
  wrap.append(svg);
  if (bars.length === 0) {
    svg.append(s("text", { x: W / 2, y: H / 2 + 4, "text-anchor": "middle", class: "empty" }, opts.empty || "no data yet"));
    return wrap;
  }
  const max = Math.max(...bars.map((b) => b.value), 1e-12);
  bars.forEach((b, i) => {
    const yy = 4 + i * row;
    const w = Math.max(1, (b.value / max) * (W - L - R));
    const g = s("g", { "data-label": b.label, "data-value": b.value });
    g.append(s("text", { x: L - 6, y: yy + 14, "text-anchor": "end" }, b.label.length > 36 ? `${b.label.slice(0, 35)}…` : b.label));
    const rect = s("rect", { x: L, y: yy + 3, width: w.toFixed(1), height: row - 8, rx: 2, class: `s${(opts.colorBy ? i : 0) % 8}` });
    rect.append(s("title", {}, `${b.label}: ${fmt(b.value)}`));
    g.append(rect, s("text", { x: L + w + 6, y: yy + 14 }, fmt(b.value)));
    svg.append(g);
  });
  return wrap;
}
