// One dead letter: its raw bytes (text with escapes, and hex), its reasons pointing into the
// body, an editor (corrected body or JSON Patch) with a live dry-run, replay and discard.

import { call, can } from "./api.js";
import { el, fill, note, num, stamp, ago } from "./dom.js";
import { fromBase64, hexDump, isCleanText, locate, pathSegments, textPieces } from "./bytes.js";

const DRY_RUN_DELAY_MS = 350;
const JSON_PATCH = "application/json-patch+json";

function facts(d) {
  const rows = [
    ["id", d.dead_letter_id], ["family", d.family], ["stage", d.stage], ["status", d.status],
    ["received", `${stamp(d.received_at)} (${ago(d.received_at)})`], ["event id", d.event_id ?? "–"],
    ["attempt", d.attempt], ["replay of", d.replay_of ?? "–"], ["content type", d.content_type],
    ["size", `${num(d.size)} bytes`], ["source", `${d.source.topic ?? "–"} [${d.source.partition ?? "–"}] @ ${d.source.offset ?? "–"}`],
  ];
  return el("dl", { class: "facts" }, rows.map(([k, v]) => [el("dt", {}, k), el("dd", { class: k === "id" || k === "event id" ? "mono" : "" }, v)]));
}

/** The body as text: escapes marked, and each located reason path wrapped in a <mark>. */
function textView(bytes, text, marks) {
  const pre = el("pre", { class: "body", tabindex: 0, "aria-label": "raw body as text" });
  if (!isCleanText(bytes) || !marks.length) {
    for (const piece of textPieces(bytes)) {
      pre.append(piece.escape ? el("span", { class: "esc", title: "a byte that is not UTF-8 text" }, piece.text) : piece.text);
    }
    return pre;
  }
  const sorted = [...marks].sort((a, b) => a.range[0] - b.range[0]);
  let at = 0;
  for (const m of sorted) {
    if (m.range[0] < at) continue; // nested in an earlier mark
    pre.append(text.slice(at, m.range[0]));
    pre.append(el("mark", { id: m.id, title: m.title }, text.slice(m.range[0], m.range[1])));
    at = m.range[1];
  }
  pre.append(text.slice(at));
  return pre;
}

function reasonsList(reasons, located) {
  return el("ul", { class: "reasons-list" }, reasons.map((r, i) => el("li", { "data-code": r.code },
    el("code", { class: "code" }, r.code), " ", el("span", { class: "message" }, r.message), " ",
    r.path ? (located.has(i)
      ? el("a", { href: `#mark-${i}`, class: "path", onclick: (e) => { e.preventDefault(); flash(`mark-${i}`); } }, r.path)
      : el("code", { class: "path muted" }, r.path)) : null)));
}

function flash(id) {
  const mark = document.getElementById(id);
  if (!mark) return;
  mark.scrollIntoView({ block: "center" });
  mark.classList.remove("flash");
  void mark.offsetWidth;
  mark.classList.add("flash");
}

function verdict(box, answer) {
  if (answer.outcome === "valid" || answer.outcome === "replayed") {
    const ids = answer.event_ids.length ? ` (${answer.event_ids.join(", ")})` : "";
    return fill(box, el("p", { class: "pass" }, answer.dry_run ? `Passes${ids}.` : `Replayed${ids}.`));
  }
  fill(box, el("p", { class: "fail" }, answer.dry_run ? "Still invalid:" : "Replayed, still invalid:"),
    el("ul", { class: "reasons-list" }, answer.reasons.map((r) => el("li", {},
      el("code", { class: "code" }, r.code), " ", r.message, r.path ? el("code", { class: "path" }, ` ${r.path}`) : null))));
}

function editor(d, text, onReplayed) {
  const mode = { value: "body" };
  const area = el("textarea", { id: "editor", spellcheck: "false", rows: 12, "aria-label": "corrected body" });
  area.value = text;
  const result = el("div", { class: "dry-run", role: "status", "aria-live": "polite" });
  const asBody = el("input", { type: "radio", name: "mode", value: "body", checked: true, id: "mode-body" });
  const asPatch = el("input", { type: "radio", name: "mode", value: "patch", id: "mode-patch" });
  const send = (dry) => {
    const edited = mode.value === "patch" ? area.value.trim() !== "" : area.value !== text;
    const options = !edited ? {} : { body: area.value, contentType: mode.value === "patch" ? JSON_PATCH : "application/json" };
    return call("POST", `/v1/dead-letters/${encodeURIComponent(d.dead_letter_id)}/replay`, { ...options, params: { dry_run: dry ? "true" : "" } });
  };
  let timer = null, asked = 0;
  const dryRun = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++asked;
      fill(result, el("p", { class: "muted" }, "Checking…"));
      try {
        const answer = (await send(true)).data;
        if (mine === asked) verdict(result, answer);
      } catch (error) {
        if (mine === asked) fill(result, el("p", { class: "fail" }, `Refused: ${error.code || error.status}: ${error.message}`));
      }
    }, DRY_RUN_DELAY_MS);
  };
  const setMode = (value) => {
    mode.value = value;
    area.value = value === "patch" ? '[\n  {"op": "replace", "path": "/field", "value": "…"}\n]' : text;
    area.setAttribute("aria-label", value === "patch" ? "JSON Patch" : "corrected body");
    dryRun();
  };
  asBody.addEventListener("change", () => setMode("body"));
  asPatch.addEventListener("change", () => setMode("patch"));
  area.addEventListener("input", dryRun);
  const replay = el("button", { type: "button", id: "replay" }, "Replay");
  replay.addEventListener("click", async () => {
    replay.disabled = true;
    try {
      const answer = (await send(false)).data;
      verdict(result, answer);
      onReplayed(answer);
    } catch (error) {
      fill(result, el("p", { class: "fail" }, `Not replayed: ${error.code || error.status}: ${error.message}`));
      replay.disabled = false;
    }
  });
  const discard = el("button", { type: "button", class: "danger", id: "discard" }, "Discard");
  discard.addEventListener("click", async () => {
    if (!confirm("Discard this dead letter? It will never be replayed.")) return;
    try {
      await call("POST", `/v1/dead-letters/${encodeURIComponent(d.dead_letter_id)}/discard`);
      onReplayed({ discarded: true });
    } catch (error) {
      fill(result, el("p", { class: "fail" }, `Not discarded: ${error.message}`));
    }
  });
  dryRun();
  return el("section", { class: "card" }, el("h2", {}, "Fix and replay"),
    el("fieldset", { class: "row" }, el("legend", {}, "Edit as"),
      el("label", { for: "mode-body" }, asBody, " text (the whole body)"),
      el("label", { for: "mode-patch" }, asPatch, " JSON Patch")),
    area, result, el("div", { class: "buttons" }, replay, discard));
}

export async function deadLetterPage(page, { arg }) {
  const d = (await call("GET", `/v1/dead-letters/${encodeURIComponent(arg)}`)).data;
  const bytes = fromBase64(d.raw_base64);
  const text = new TextDecoder("utf-8").decode(bytes);
  let parsed = true;
  try { JSON.parse(text); } catch { parsed = false; }
  const marks = [];
  const located = new Set();
  d.reasons.forEach((r, i) => {
    const segments = parsed ? pathSegments(r.path) : null;
    const range = segments && segments.length ? locate(text, segments) : null;
    if (range) { marks.push({ id: `mark-${i}`, range, title: `${r.code}: ${r.message}` }); located.add(i); }
  });
  const views = { text: textView(bytes, text, marks), hex: el("pre", { class: "body hex", tabindex: 0, "aria-label": "raw body as hex", hidden: true }, hexDump(bytes)) };
  const tab = (name, label) => el("button", { type: "button", class: "tab", "aria-pressed": name === "text" ? "true" : "false",
    onclick: (e) => {
      for (const [k, v] of Object.entries(views)) v.hidden = k !== name;
      for (const b of e.target.parentNode.children) b.setAttribute("aria-pressed", b === e.target ? "true" : "false");
    } }, label);
  const done = el("div", { role: "status" });
  const writable = can("deadletters:replay") && d.status === "pending";
  fill(page,
    el("p", {}, el("a", { href: "#/dead-letters" }, "← Dead letters")),
    el("h1", {}, "Dead letter ", el("span", { class: "mono muted" }, d.dead_letter_id)),
    el("div", { class: "columns" },
      el("section", { class: "card" }, el("h2", {}, "Reasons"), reasonsList(d.reasons, located), facts(d)),
      el("section", { class: "card" }, el("h2", {}, "Raw body"),
        el("div", { class: "tabs" }, tab("text", "Text"), tab("hex", "Hex")), views.text, views.hex)),
    writable ? editor(d, text, (answer) => {
      fill(done, note(answer.discarded ? "Discarded." : "Done: this dead letter is no longer pending.", "ok"));
    }) : el("p", { class: "muted" }, d.status !== "pending" ? `This dead letter is ${d.status}.` : "This key may read dead letters but not replay or discard them."),
    done);
}
