// Overview: the last 15 minutes from GET /v1/overview, refreshed every few seconds.

import { call, ApiError } from "./api.js";
import { el, fill, note, num, stamp, ago } from "./dom.js";
import { linePlot, onGrid } from "./plot.js";

const REFRESH_MS = 5000;

function familyLines(map, from, to, step) {
  return Object.keys(map || {}).sort().map((name) => ({ name, points: onGrid(map[name], from, to, step) }));
}

/** Rates: the legend shows the mean of the last minute (the newest bucket is still filling). */
function rateLines(map, from, to, step) {
  const span = Math.max(1, Math.round(60 / step));
  return familyLines(map, from, to, step).map((line) => {
    const recent = line.points.slice(-span);
    const mean = recent.reduce((sum, p) => sum + p[1], 0) / Math.max(recent.length, 1);
    return { ...line, last: mean };
  });
}

/** Lines of measurements (not rates): the legend shows the latest measured, "–" for none. */
function measuredLines(map, from, to, step) {
  return familyLines(map, from, to, step).map((line) => {
    const raw = map[line.name];
    return { ...line, last: raw.length ? raw[raw.length - 1][1] : null };
  });
}

function figure(label, value, detail = "") {
  return el("div", { class: "stat", "data-figure": label }, el("span", { class: "label" }, label),
    el("span", { class: "value" }, value), detail ? el("span", { class: "detail" }, detail) : null);
}

function render(body, o) {
  const to = o.now, from = o.now - o.window_seconds, step = o.bucket_seconds;
  const latency = o.latency_ms;
  const lag = o.lag;
  const stats = el("div", { class: "stats" },
    figure("accepted", num(o.totals.accepted), `in ${Math.round(o.window_seconds / 60)} min`),
    figure("rejected", num(o.totals.rejected), `in ${Math.round(o.window_seconds / 60)} min`),
    figure("dead letters pending", num(o.totals.dead_letters_pending)),
    figure("accepted → queryable p50", latency ? `${num(latency.p50)} ms` : "–"),
    figure("p99", latency ? `${num(latency.p99)} ms` : "–"),
    figure("worker lag", lag && lag.worker !== null ? num(lag.worker) : "–", "messages"),
    figure("sink lag", lag && lag.sink !== null ? num(lag.sink) : "–", "messages"),
  );
  const plots = el("div", { class: "plots" },
    linePlot({ title: "Accepted events/s by family", lines: rateLines(o.accepted, from, to, step), from, to, unit: "/s, last min" }),
    linePlot({ title: "Rejected events/s by family", lines: rateLines(o.rejected, from, to, step), from, to, unit: "/s, last min" }),
    linePlot({ title: "Dead letters/s by reason", lines: rateLines(o.dead_letters, from, to, step), from, to, unit: "/s, last min" }),
    linePlot({ title: "Accepted → queryable (ms)", from, to, unit: "ms",
      lines: latency && latency.series.length ? [
        { name: "p50", points: onGrid(latency.series, from, to, step, 1), last: latency.p50 },
        { name: "p99", points: onGrid(latency.series, from, to, step, 2), last: latency.p99 }] : [] }),
    linePlot({ title: "Consumer lag (messages, whole pipeline)", from, to,
      lines: lag && lag.series ? measuredLines(lag.series, from, to, step) : [] }),
  );
  const breakers = o.breakers.length
    ? el("table", { class: "table" },
      el("thead", {}, el("tr", {}, ["worker", "partition", "family", "state", "held", "since"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, o.breakers.map((b) => el("tr", {},
        el("td", {}, b.worker), el("td", {}, b.partition), el("td", {}, b.family),
        el("td", {}, el("span", { class: `pill ${b.state}` }, b.state)), el("td", {}, num(b.held)),
        el("td", {}, `${stamp(b.since)} (${ago(b.since)})`)))))
    : el("p", { class: "muted" }, "Every breaker is closed.");
  fill(body, stats, plots,
    el("section", { class: "card" }, el("h2", {}, "DLQ circuit breakers"), breakers),
    el("p", { class: "muted small" }, `Figures at ${stamp(o.now)}, every ${step} s; refreshing every ${REFRESH_MS / 1000} s.`));
}

export async function overviewPage(page) {
  const body = el("div", { class: "overview", "aria-live": "polite" }, note("Loading figures…"));
  fill(page, el("h1", {}, "Overview ", el("span", { class: "muted" }, "last 15 minutes")), body);
  let timer = null, stopped = false;
  const refresh = async () => {
    try {
      render(body, (await call("GET", "/v1/overview", { params: { minutes: 15 } })).data);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) fill(body, note("Figures unavailable: this server has no /v1/overview.", "error"));
      else if (!(error instanceof ApiError && error.status === 401)) fill(body, note(`Figures unavailable: ${error.message}`, "error"));
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  };
  await refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
