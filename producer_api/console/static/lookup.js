// Event lookup: an event's history by id and family (GET /v1/events/{id}/history), or every
// event of a request (GET /v1/requests/{request_id}), as a timeline.

import { call, ApiError } from "./api.js";
import { el, fill, note, stamp, ago } from "./dom.js";

const FAMILIES = ["native", "dashdive", "datahub", "baselime", "dynatrace", "dakkio", "posthog",
  "otlp", "segment", "rudderstack"];

const SENTENCES = {
  accepted: (s) => `accepted in request ${s.request_id ?? "?"} at partition ${s.partition ?? "?"}, offset ${s.offset ?? "?"} of ingest.raw`,
  rejected: (s) => `rejected at the ${s.stage}` + (s.dead_letter_id ? ` as dead letter ${s.dead_letter_id}` : "") + (s.status ? ` (${s.status})` : ""),
  stored: (s) => `stored as version ${s.version}: queryable`,
  replaced: (s) => `replaced by version ${s.by_version}` + (s.by_request_id ? ` of request ${s.by_request_id}` : ""),
  replayed: (s) => (s.dead_letter_id ? `replayed from dead letter ${s.dead_letter_id}` : "replayed from a dead letter") +
    (s.job_id ? ` by job ${s.job_id}` : "") + (s.outcome ? `: ${s.outcome}` : ""),
  discarded: (s) => "discarded" + (s.dead_letter_id ? ` dead letter ${s.dead_letter_id}` : ""),
  deleted: (s) => `deleted` + (s.deletion_id ? ` by receipt ${s.deletion_id}` : ""),
};
const SHOWN = new Set(["step", "at", "reasons"]);

function timeline(steps) {
  return el("ol", { class: "timeline" }, steps.map((s) => el("li", { class: `step ${s.step}`, "data-step": s.step },
    el("span", { class: "when" }, s.at ? `${stamp(s.at)} · ${ago(s.at)}` : ""),
    el("strong", { class: "what" }, (SENTENCES[s.step] || ((x) => x.step))(s)),
    s.dead_letter_id ? [" ", el("a", { href: `#/dead-letter/${encodeURIComponent(s.dead_letter_id)}` }, "open the dead letter")] : null,
    s.reasons ? el("ul", { class: "reasons-list" }, s.reasons.map((r) => el("li", {},
      el("code", { class: "code" }, r.code), " ", r.message, r.path ? el("code", { class: "path" }, ` ${r.path}`) : null))) : null,
    el("details", {}, el("summary", {}, "fields"),
      el("dl", { class: "facts" }, Object.entries(s).filter(([k]) => !SHOWN.has(k)).map(([k, v]) =>
        [el("dt", {}, k), el("dd", { class: "mono" }, v === null ? "null" : typeof v === "object" ? JSON.stringify(v) : String(v))]))))));
}

function eventCard(h) {
  return el("section", { class: "card" },
    el("h2", {}, el("span", { class: "mono" }, h.event_id ?? "(no id)"), " ", el("span", { class: "muted" }, h.family),
      h.current_version !== null && h.current_version !== undefined ? el("span", { class: "pill stored" }, `current version ${h.current_version}`) : null),
    timeline(h.steps));
}

async function show(out, params) {
  fill(out, note("Looking up…"));
  try {
    if (params.get("request")) {
      const { data } = await call("GET", `/v1/requests/${encodeURIComponent(params.get("request"))}`);
      fill(out, el("h2", {}, "Request ", el("span", { class: "mono" }, data.request_id)),
        data.events.map(eventCard), data.unidentified.map((u) => eventCard({ ...u, event_id: null, current_version: null })),
        data.next_cursor ? el("p", { class: "muted" }, "More events than shown; ask the API with the cursor.") : null);
    } else if (params.get("event")) {
      const { data } = await call("GET", `/v1/events/${encodeURIComponent(params.get("event"))}/history`,
        { params: { family: params.get("family") || "native" } });
      fill(out, eventCard(data));
    } else {
      fill(out);
    }
  } catch (error) {
    fill(out, note(error instanceof ApiError && error.status === 404 ? "Nothing is recorded of it." : `Lookup failed: ${error.message}`, "error"));
  }
}

export async function lookupPage(page, { params }) {
  const family = el("select", { name: "family", id: "lookup-family" }, FAMILIES.map((f) => el("option", { value: f, selected: f === (params.get("family") || "native") }, f)));
  const eventId = el("input", { name: "event", id: "lookup-event", value: params.get("event") || "", spellcheck: "false" });
  const requestId = el("input", { name: "request", id: "lookup-request", value: params.get("request") || "", spellcheck: "false" });
  const byEvent = el("form", { class: "filters card", "aria-label": "Find an event" },
    el("label", { for: "lookup-event" }, "Event id", eventId), el("label", { for: "lookup-family" }, "Family", family),
    el("div", { class: "buttons" }, el("button", { type: "submit" }, "Find event")));
  const byRequest = el("form", { class: "filters card", "aria-label": "Find a request" },
    el("label", { for: "lookup-request" }, "Request id", requestId),
    el("div", { class: "buttons" }, el("button", { type: "submit" }, "Find request")));
  byEvent.addEventListener("submit", (e) => { e.preventDefault(); location.hash = `#/lookup?${new URLSearchParams({ event: eventId.value.trim(), family: family.value })}`; });
  byRequest.addEventListener("submit", (e) => { e.preventDefault(); location.hash = `#/lookup?${new URLSearchParams({ request: requestId.value.trim() })}`; });
  const out = el("div", { class: "lookup-result" });
  fill(page, el("h1", {}, "Where is my event?"), el("div", { class: "columns" }, byEvent, byRequest), out);
  await show(out, params);
}
