// Dead letters: groups by reason and family (GET /v1/dead-letters/summary), the list with
// filters (GET /v1/dead-letters), and a replay job over the filter with its progress.

import { call, can, ApiError } from "./api.js";
import { el, fill, note, num, stamp, ago } from "./dom.js";
import { onGrid, sparkBars } from "./plot.js";

const FAMILIES = ["", "native", "dashdive", "datahub", "baselime", "dynatrace", "dakkio",
  "posthog", "otlp", "segment", "rudderstack"];
const HOUR = 3600;
const FILTERS = ["family", "stage", "reason", "status", "from", "to", "q"];

function select(name, label, options, value) {
  return el("label", {}, label, el("select", { name },
    options.map((o) => el("option", { value: o, selected: o === value }, o || "any"))));
}

function input(name, label, value, type = "text", extra = {}) {
  return el("label", {}, label, el("input", { name, type, value: value || "", ...extra }));
}

/** datetime-local value <-> ISO (UTC) for the routes' from/to. */
const toLocal = (iso) => {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};
const fromLocal = (value) => (value ? new Date(value).toISOString() : "");

function filtersOf(params) {
  const out = {};
  for (const name of FILTERS) if (params.get(name)) out[name] = params.get(name);
  return out;
}

function go(filters) {
  location.hash = `#/dead-letters?${new URLSearchParams(filters)}`;
}

function filterForm(filters) {
  const form = el("form", { class: "filters card", "aria-label": "Filters" },
    select("family", "Family", FAMILIES, filters.family || ""),
    select("stage", "Stage", ["", "door", "stream", "sink"], filters.stage || ""),
    input("reason", "Reason", filters.reason, "text", { placeholder: "e.g. invalid_timestamp" }),
    select("status", "Status", ["", "pending", "replayed", "discarded"], filters.status || ""),
    input("from", "Received from", toLocal(filters.from), "datetime-local"),
    input("to", "until", toLocal(filters.to), "datetime-local"),
    input("q", "Bytes in the body", filters.q, "search", { placeholder: "text to find" }),
    el("div", { class: "buttons" }, el("button", { type: "submit" }, "Apply"),
      el("button", { type: "button", class: "secondary", onclick: () => go({}) }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const name of FILTERS) {
      const raw = String(data.get(name) || "").trim();
      const value = name === "from" || name === "to" ? fromLocal(raw) : raw;
      if (value) next[name] = value;
    }
    go(next);
  });
  return form;
}

async function groups(box, filters) {
  try {
    const { data } = await call("GET", "/v1/dead-letters/summary", { params: filters });
    const now = Date.now() / 1000;
    if (!data.groups.length) return fill(box, el("p", { class: "muted" }, "No dead letters match."));
    fill(box, el("table", { class: "table groups" },
      el("caption", {}, `${num(data.total)} dead letter${data.total === 1 ? "" : "s"} by reason and family (trend: per hour, last 24 h)`),
      el("thead", {}, el("tr", {}, ["reason", "family", "count", "pending", "last", "trend"].map((h) => el("th", { scope: "col", class: h === "count" || h === "pending" ? "n" : null }, h)))),
      el("tbody", {}, data.groups.map((g) => el("tr", { "data-reason": g.reason, "data-family": g.family },
        el("td", {}, el("a", { href: `#/dead-letters?${new URLSearchParams({ ...filters, reason: g.reason, family: g.family })}` }, g.reason)),
        el("td", {}, g.family), el("td", { class: "n" }, num(g.count)), el("td", { class: "n" }, num(g.pending)),
        el("td", {}, ago(g.last)), el("td", {}, sparkBars(onGrid(g.trend, now - 23 * HOUR, now, HOUR), `trend of ${g.reason}, per hour`)))))));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) fill(box, note("Groups unavailable: this server has no /v1/dead-letters/summary.", "error"));
    else fill(box, note(`Groups unavailable: ${error.message}`, "error"));
  }
}

function row(d) {
  const codes = [...new Set(d.reasons.map((r) => r.code))].join(", ");
  return el("tr", { "data-id": d.dead_letter_id },
    el("td", {}, el("a", { href: `#/dead-letter/${encodeURIComponent(d.dead_letter_id)}` }, stamp(d.received_at))),
    el("td", {}, d.family), el("td", {}, d.stage), el("td", { class: "reasons" }, codes),
    el("td", { class: "mono" }, d.event_id ?? "–"),
    el("td", {}, el("span", { class: `pill ${d.status}` }, d.status)), el("td", { class: "n" }, num(d.size)));
}

async function list(box, filters) {
  const tbody = el("tbody");
  const more = el("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  fill(box, el("table", { class: "table" },
    el("caption", {}, "Dead letters, oldest first"),
    el("thead", {}, el("tr", {}, ["received", "family", "stage", "reasons", "event id", "status", "bytes"].map((h) => el("th", { scope: "col", class: h === "bytes" ? "n" : null }, h)))),
    tbody), more);
  let cursor = null;
  const page = async () => {
    try {
      const { data } = await call("GET", "/v1/dead-letters", { params: { ...filters, limit: 50, cursor } });
      tbody.append(...data.dead_letters.map(row));
      if (!tbody.children.length) tbody.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "None.")));
      cursor = data.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      box.append(note(`Could not list: ${error.message}`, "error"));
    }
  };
  more.addEventListener("click", page);
  await page();
}

/** A replay job over the filter's pending dead letters, and its progress bar. */
function bulk(filters) {
  const dry = el("input", { type: "checkbox", name: "dry_run", id: "bulk-dry" });
  const bar = el("progress", { max: 1, value: 0, hidden: true, "aria-label": "replay job progress" });
  const status = el("p", { class: "note", role: "status" });
  const start = el("button", { type: "button" }, "Replay all pending that match");
  start.addEventListener("click", async () => {
    const spec = { dry_run: dry.checked };
    for (const name of ["family", "stage", "reason", "from", "to", "q"]) if (filters[name]) spec[name] = filters[name];
    start.disabled = true;
    try {
      const { data } = await call("POST", "/v1/dead-letters/replay", { json: spec });
      bar.hidden = false;
      status.textContent = `Job ${data.job_id}: ${data.total} dead letters`;
      const poll = async () => {
        const job = (await call("GET", `/v1/replay-jobs/${data.job_id}`)).data;
        bar.value = job.progress;
        const c = job.counts;
        status.textContent = `Job ${job.job_id} ${job.state}${job.dry_run ? " (dry run)" : ""}: ` +
          `${c.replayed} replayed, ${c.still_invalid} still invalid, ${c.failed} failed, ${c.skipped} skipped of ${c.total}`;
        if (job.state === "done" || job.state === "failed") start.disabled = false;
        else setTimeout(poll, 1000);
      };
      await poll();
    } catch (error) {
      status.textContent = `Not started: ${error.message}`;
      start.disabled = false;
    }
  });
  return el("section", { class: "card bulk" }, el("h2", {}, "Replay by filter"),
    el("div", { class: "row" }, start, el("label", { for: "bulk-dry" }, dry, " dry run")), bar, status);
}

export async function deadLettersPage(page, { params }) {
  const filters = filtersOf(params);
  const groupBox = el("section", { class: "card" }, note("Loading groups…"));
  const listBox = el("section", { class: "card" }, note("Loading…"));
  fill(page, el("h1", {}, "Dead letters"), filterForm(filters), groupBox,
    can("deadletters:replay") ? bulk(filters) : null, listBox);
  await Promise.all([groups(groupBox, filters), list(listBox, filters)]);
}
