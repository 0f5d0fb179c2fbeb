// A small SVG line plot of our own: time on x, one line per series, gaps drawn as zero.

import { el, svg, num } from "./dom.js";

export const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
  "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

/** Points [[t, v], ...] on the grid from..to by step, missing buckets as zero. */
export function onGrid(points, from, to, step, column = 1) {
  const byTime = new Map(points.map((p) => [Math.floor(p[0] / step) * step, p[column]]));
  const out = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    out.push([t, byTime.get(t) ?? 0]);
  }
  return out;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

function clock(t) {
  const d = new Date(t * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/**
 * A figure: title, plot and legend. `lines`: [{name, points, last?}] already on the grid;
 * the legend shows `last` when given (a measurement's latest), else the newest grid point.
 * `unit` labels the y axis. An empty `lines` says "no data in this window".
 */
export function linePlot({ title, lines, from, to, unit = "", height = 170 }) {
  const width = 400, left = 40, right = 6, top = 8, bottom = 22;
  const plotW = width - left - right, plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...lines.flatMap((l) => l.points.map((p) => p[1]))));
  const x = (t) => left + ((t - from) / Math.max(to - from, 1)) * plotW;
  const y = (v) => top + plotH - (v / max) * plotH;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "plot", role: "img",
    "aria-label": `${title}: ${lines.length ? lines.map((l) => l.name).join(", ") : "no data"}` });
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }));
    chart.append(svg("text", { x: left - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" }, num(v)));
  }
  const stepTicks = 300;
  for (let t = Math.ceil(from / stepTicks) * stepTicks; t <= to; t += stepTicks) {
    chart.append(svg("text", { x: x(t), y: height - 6, class: "tick", "text-anchor": "middle" }, clock(t)));
  }
  lines.forEach((line, i) => {
    const d = line.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    chart.append(svg("path", { d, fill: "none", stroke: line.color || COLORS[i % COLORS.length],
      "stroke-width": 1.8, class: "line" }));
  });
  if (!lines.length) {
    chart.append(svg("text", { x: left + plotW / 2, y: top + plotH / 2, class: "empty",
      "text-anchor": "middle" }, "no data in this window"));
  }
  const legend = el("ul", { class: "legend" }, lines.map((line, i) => {
    const last = "last" in line ? line.last : line.points.length ? line.points[line.points.length - 1][1] : null;
    return el("li", {},
      el("span", { class: "swatch", style: { background: line.color || COLORS[i % COLORS.length] } }),
      line.name, " ", el("b", {}, `${num(last)}${unit ? ` ${unit}` : ""}`));
  }));
  return el("figure", { class: "card figure" }, el("figcaption", {}, title), chart, legend);
}

/** A row of small bars (a trend per hour), for a table cell. */
export function sparkBars(points, label) {
  const width = 96, height = 22;
  const max = Math.max(1, ...points.map((p) => p[1]));
  const bar = width / Math.max(points.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img",
    "aria-label": label });
  points.forEach((p, i) => {
    const h = Math.max(p[1] > 0 ? 1.5 : 0, (p[1] / max) * height);
    chart.append(svg("rect", { x: i * bar + 0.5, y: height - h, width: Math.max(bar - 1, 1), height: h }));
  });
  return chart;
}
