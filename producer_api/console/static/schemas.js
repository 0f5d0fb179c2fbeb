// Schemas (issue 22, on issue 17's registry under /schema-registry): the tenant's subjects;
// one subject's versions pretty-printed and a line diff between two of them; for a data
// contract, how many pending dead letters its current version heals (a dry-run heal job)
// and the heal itself with its progress; a new version registered from a textarea, with
// its would_heal or every reason it is incompatible. Reading needs schemas:read, writing
// schemas:write, counting and healing deadletters:replay; what the key may not do is not shown.

import { call, can, ApiError } from "./api.js";
import { el, fill, note, num } from "./dom.js";
import { lineDiff } from "./diff.js";

const REGISTRY = "/schema-registry";
const REGISTRY_TYPE = "application/vnd.schemaregistry.v1+json";
const CONTRACT = /^(native|baselime|dakkio|dynatrace)\.(.+)$/;
const POLL_MS = 1000;
const SHOWN_VERSIONS = 50;

const subjectPath = (subject, rest = "") => `${REGISTRY}/subjects/${encodeURIComponent(subject)}${rest}`;
const subjectHref = (subject) => `#/schemas/${encodeURIComponent(subject)}`;
const sleep = (ms) => new Promise((done) => { setTimeout(done, ms); });

/** Whether `subject` is a data contract's (the subjects issue 17 enforces on events). */
export const isContract = (subject) => CONTRACT.test(subject);

const kindOf = (subject) => (isContract(subject) ? "data contract" : "registry schema");

/** A schema's text as indented JSON (a schema that is not JSON is shown as it is). */
export function pretty(schema) {
  try { return JSON.stringify(JSON.parse(schema), null, 2); } catch { return schema; }
}

const registry = (method, path, body) => call(method, path, body === undefined ? {}
  : { body: JSON.stringify(body), contentType: REGISTRY_TYPE });

/** Poll replay job `id` until it is done or failed (or the page is left); `seen(job)` each time. */
async function followJob(id, seen, alive) {
  for (;;) {
    const job = (await call("GET", `/v1/replay-jobs/${encodeURIComponent(id)}`)).data;
    seen(job);
    if (job.state === "done" || job.state === "failed" || !alive()) return job;
    await sleep(POLL_MS);
  }
}

const plural = (n, one, many = `${one}s`) => `${num(n)} ${n === 1 ? one : many}`;

// ---- the list of subjects --------------------------------------------------------------

async function subjectRows(subjects) {
  const order = (s) => (isContract(s) ? 0 : 1);
  const sorted = [...subjects].sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  return Promise.all(sorted.map(async (subject) => {
    const { data } = await registry("GET", subjectPath(subject, "/versions"));
    return { subject, versions: data };
  }));
}

function subjectsTable(rows) {
  if (!rows.length) return el("p", { class: "muted" }, "No subjects yet.");
  return el("table", { class: "table subjects" },
    el("caption", {}, `${plural(rows.length, "subject")}: the tenant's data contracts first, then the registry's others (Sluice's own topic schemas among them)`),
    el("thead", {}, el("tr", {}, ["subject", "kind", "versions", "latest"].map((h) =>
      el("th", { scope: "col", class: h === "versions" || h === "latest" ? "n" : null }, h)))),
    el("tbody", {}, rows.map(({ subject, versions }) => el("tr", { "data-subject": subject },
      el("td", {}, el("a", { href: subjectHref(subject), class: "mono" }, subject)),
      el("td", {}, el("span", { class: `pill ${isContract(subject) ? "contract" : ""}` }, kindOf(subject))),
      el("td", { class: "n" }, num(versions.length)),
      el("td", { class: "n" }, versions.length ? `v${versions[versions.length - 1]}` : "–")))));
}

function newSubjectForm() {
  const subject = el("input", { id: "new-subject", name: "subject", required: true, spellcheck: "false",
    placeholder: "native.usage.api_call", class: "mono", size: 40 });
  const text = el("textarea", { id: "new-schema", rows: 8, spellcheck: "false", "aria-label": "the first version's JSON Schema" },
    '{\n  "type": "object",\n  "properties": {}\n}');
  const result = el("div", { class: "register-result", role: "status" });
  const form = el("form", { class: "card", "aria-label": "Register a new subject" },
    el("h2", {}, "A new data contract"),
    el("p", { class: "muted small" }, "Subjects: native.<type>, baselime.<dataset>, dakkio.<data source id>, " +
      "dynatrace.<type>. The schema is a JSON Schema for the events' data."),
    el("label", { for: "new-subject" }, "Subject", subject), el("label", { for: "new-schema" }, "JSON Schema"), text,
    el("div", { class: "buttons" }, el("button", { type: "submit" }, "Register subject")), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = subject.value.trim();
    const answer = await register(name, text.value, "JSON", result);
    if (answer) location.hash = subjectHref(name);
  });
  return form;
}

async function subjectsPage(page) {
  const box = el("section", { class: "card" }, note("Loading subjects…"));
  fill(page, el("h1", {}, "Schemas"), box, can("schemas:write") ? newSubjectForm() : null);
  const { data } = await registry("GET", `${REGISTRY}/subjects`);
  fill(box, subjectsTable(await subjectRows(data)));
}

// ---- registering a version -------------------------------------------------------------

/** Every reason `text` may not follow the subject's versions (its compatibility mode's check). */
async function incompatibilities(subject, body) {
  try {
    const { data } = await registry("POST",
      `${REGISTRY}/compatibility/subjects/${encodeURIComponent(subject)}/versions/latest?verbose=true`, body);
    return data.messages || [];
  } catch {
    return [];
  }
}

function reasonList(reasons) {
  return el("ul", { class: "reasons-list incompatibilities" }, reasons.map((r) => el("li", {}, r)));
}

/** The body to register `text` as, or null after saying in `result` why it is not JSON. */
function schemaBody(text, schemaType, result) {
  try {
    const parsed = JSON.parse(text);
    return { schemaType, schema: JSON.stringify(parsed) };
  } catch (error) {
    fill(result, note(`Not registered: the schema is not JSON (${error.message}).`, "error"));
    return null;
  }
}

/** Register `text` under `subject`; the registry's answer, or null after saying why not. */
async function register(subject, text, schemaType, result) {
  const body = schemaBody(text, schemaType, result);
  if (!body) return null;
  if (!subject) {
    fill(result, note("Not registered: name the subject.", "error"));
    return null;
  }
  fill(result, note("Registering…"));
  try {
    return (await registry("POST", subjectPath(subject, "/versions"), body)).data;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    const reasons = error.status === 409 ? await incompatibilities(subject, body) : [];
    fill(result, note(`Not registered (${error.status}): ${error.message}`, "error"),
      reasons.length ? [el("p", {}, `${plural(reasons.length, "incompatibility", "incompatibilities")}:`), reasonList(reasons)] : null);
    return null;
  }
}

function registerForm(subject, latest, onRegistered) {
  const contract = isContract(subject);
  const text = el("textarea", { id: "schema-editor", rows: 14, spellcheck: "false", "aria-label": "the new version's schema" },
    latest ? pretty(latest.schema) : "");
  const type = el("select", { id: "schema-type", name: "schemaType", disabled: contract },
    ["JSON", "AVRO"].map((t) => el("option", { value: t, selected: t === (latest?.schemaType || "JSON") }, t)));
  const result = el("div", { class: "register-result", role: "status" });
  const check = el("button", { type: "button", class: "secondary", id: "check-schema" }, "Check compatibility");
  const submit = el("button", { type: "submit", id: "register-schema" }, "Register version");
  check.addEventListener("click", async () => {
    const body = schemaBody(text.value, type.value, result);
    if (!body) return;
    const reasons = await incompatibilities(subject, body);
    fill(result, reasons.length
      ? [note(`Incompatible: ${plural(reasons.length, "reason")}.`, "error"), reasonList(reasons)]
      : note("Compatible with the versions this subject's mode checks.", "ok"));
  });
  const form = el("form", { class: "card register", "aria-label": "Register a new version" },
    el("h2", {}, "Register a new version"),
    el("label", { for: "schema-type", class: "inline" }, "Schema type", type), text,
    el("div", { class: "buttons" }, submit, check), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const answer = await register(subject, text.value, type.value, result);
      if (answer) await onRegistered(answer, result);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// ---- versions and their diff -----------------------------------------------------------

function versionsCard(versions) {
  const view = el("div", { class: "version-view" });
  const tabs = versions.map((v) => el("button", { type: "button", class: "tab", "data-version": v.version,
    "aria-pressed": "false" }, `v${v.version}`));
  const show = (index) => {
    tabs.forEach((tab, i) => tab.setAttribute("aria-pressed", String(i === index)));
    const v = versions[index];
    fill(view, el("p", { class: "muted small" }, `version ${v.version} · schema id ${v.id} · ${v.schemaType || "AVRO"}`),
      el("pre", { class: "schema", tabindex: 0, "aria-label": `version ${v.version}, pretty-printed` }, pretty(v.schema)));
  };
  tabs.forEach((tab, i) => tab.addEventListener("click", () => show(i)));
  show(versions.length - 1);
  return el("section", { class: "card versions" }, el("h2", {}, "Versions"),
    el("div", { class: "tabs", role: "group", "aria-label": "versions" }, tabs), view);
}

const DIFF_CLASS = { " ": "same", "-": "del", "+": "add" };

/** The line diff of two versions' pretty-printed schemas. */
export function diffView(before, after) {
  const lines = lineDiff(pretty(before.schema), pretty(after.schema));
  const added = lines.filter((l) => l.op === "+").length;
  const removed = lines.filter((l) => l.op === "-").length;
  const summary = added || removed ? `${plural(added, "line")} added, ${plural(removed, "line")} removed`
    : "the two versions are the same";
  return [el("p", { class: "diff-summary" }, `v${before.version} → v${after.version}: ${summary}`),
    el("pre", { class: "diff", tabindex: 0, "aria-label": `changes from version ${before.version} to ${after.version}` },
      lines.map((l) => el("span", { class: `line ${DIFF_CLASS[l.op]}`, "data-op": l.op },
        el("span", { class: "ln", "aria-hidden": "true" }, l.old ?? ""),
        el("span", { class: "ln", "aria-hidden": "true" }, l.new ?? ""),
        el("span", { class: "sign" }, l.op), el("span", { class: "text" }, l.text))))];
}

function versionSelect(id, label, versions, chosen) {
  return el("label", { for: id }, label, el("select", { id },
    versions.map((v, i) => el("option", { value: i, selected: i === chosen }, `v${v.version}`))));
}

function compareCard(versions) {
  if (versions.length < 2) {
    return el("section", { class: "card compare" }, el("h2", {}, "Compare versions"),
      el("p", { class: "muted" }, "One version so far: nothing to compare."));
  }
  const from = versionSelect("diff-from", "From", versions, versions.length - 2);
  const to = versionSelect("diff-to", "to", versions, versions.length - 1);
  const out = el("div", { class: "diff-box" });
  const draw = () => {
    const [a, b] = [from, to].map((l) => versions[Number(l.querySelector("select").value)]);
    fill(out, diffView(a, b));
  };
  for (const l of [from, to]) l.querySelector("select").addEventListener("change", draw);
  draw();
  return el("section", { class: "card compare" }, el("h2", {}, "Compare versions"),
    el("div", { class: "filters plain" }, from, to), out);
}

// ---- heal ------------------------------------------------------------------------------

function countsLine(job) {
  const c = job.counts;
  return `${num(c.replayed)} replayed, ${num(c.still_invalid)} still invalid, ${num(c.failed)} failed, ` +
    `${num(c.skipped)} skipped of ${num(c.total)}`;
}

function healCard(subject, alive) {
  const count = el("p", { class: "would-heal", role: "status" });
  const bar = el("progress", { max: 1, value: 0, hidden: true, "aria-label": "heal job progress" });
  const status = el("p", { class: "note heal-status", role: "status" });
  const button = el("button", { type: "button", id: "heal" }, "Heal");
  const card = el("section", { class: "card heal" }, el("h2", {}, "Dead letters this contract heals"),
    count, el("div", { class: "buttons" }, button), bar, status);
  const said = (latest, n, total) => {
    count.dataset.count = String(n);
    count.textContent = total === null ? `Version ${latest} would heal ${plural(n, "pending dead letter")}.`
      : `Version ${latest} would heal ${num(n)} of the ${plural(total, "pending dead letter")} of this subject.`;
  };
  const recount = async (latest) => {
    count.textContent = `Counting the pending dead letters version ${latest} heals…`;
    delete count.dataset.count;
    try {
      const { data } = await call("POST", "/v1/dead-letters/heal", { json: { subject, dry_run: true } });
      const job = await followJob(data.job_id, () => {}, alive);
      if (job.state === "done") said(data.version, job.counts.replayed, job.counts.total);
      else count.textContent = `Could not count: the dry run ${job.state}${job.error ? ` (${job.error})` : ""}.`;
    } catch (error) {
      count.textContent = `Could not count: ${error.message}`;
    }
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const { data } = await call("POST", "/v1/dead-letters/heal", { json: { subject, dry_run: false } });
      bar.hidden = false;
      status.textContent = `Heal job ${data.job_id} (version ${data.version}): ${plural(data.total, "dead letter")} to check`;
      const job = await followJob(data.job_id, (j) => {
        bar.value = j.progress;
        status.textContent = `Heal job ${j.job_id} ${j.state}: ${countsLine(j)}`;
      }, alive);
      if (job.state === "done") await recount(data.version);
    } catch (error) {
      status.textContent = `Not healed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
  return { card, recount, said };
}

// ---- one subject -----------------------------------------------------------------------

async function loadVersions(subject) {
  const { data: numbers } = await registry("GET", subjectPath(subject, "/versions"));
  const shown = numbers.slice(-SHOWN_VERSIONS);
  return Promise.all(shown.map(async (v) => (await registry("GET", subjectPath(subject, `/versions/${v}`))).data));
}

async function modeOf(subject) {
  try {
    const { data } = await registry("GET", `${REGISTRY}/config/${encodeURIComponent(subject)}?defaultToGlobal=true`);
    return data.compatibilityLevel;
  } catch {
    return "unknown";
  }
}

function header(subject, versions, mode) {
  const latest = versions[versions.length - 1];
  return [el("h1", {}, "Subject ", el("span", { class: "mono" }, subject),
    el("span", { class: `pill ${isContract(subject) ? "contract" : ""}` }, kindOf(subject))),
  el("p", { class: "muted subject-facts" }, `${plural(versions.length, "version")} · latest v${latest.version} ` +
    `(schema id ${latest.id}) · compatibility ${mode} · `, el("a", { href: "#/schemas" }, "all subjects"))];
}

async function subjectPage(page, subject, alive) {
  let versions;
  try {
    versions = await loadVersions(subject);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      fill(page, el("h1", {}, "Schemas"), note(`No such subject: ${subject}`, "error"), el("a", { href: "#/schemas" }, "All subjects"));
      return;
    }
    throw error;
  }
  const top = el("div");
  const body = el("div", { class: "columns schema-columns" });
  const heal = isContract(subject) && can("deadletters:replay") ? healCard(subject, alive) : null;
  const draw = async () => {
    fill(top, header(subject, versions, await modeOf(subject)));
    fill(body, versionsCard(versions), compareCard(versions));
  };
  const registered = async (answer, result) => {
    fill(result, note(`Registered version ${answer.version} (schema id ${answer.id}).`, "ok"),
      "would_heal" in answer ? wouldHealLine(answer, alive) : null);
    versions = await loadVersions(subject);
    await draw();
    if (heal && typeof answer.would_heal === "number") heal.said(answer.version, answer.would_heal, null);
    else if (heal) heal.recount(answer.version);
  };
  const healNote = isContract(subject) && !heal
    ? el("p", { class: "card muted" }, "Counting and healing this contract's dead letters needs a key with deadletters:replay.") : null;
  fill(page, top, heal ? heal.card : healNote, body,
    can("schemas:write") ? registerForm(subject, versions[versions.length - 1], registered) : null);
  await draw();
  if (heal) heal.recount(versions[versions.length - 1].version);
}

/** The register answer's would_heal; when it was too many to count at once, its job's count. */
function wouldHealLine(answer, alive) {
  const line = el("p", { class: "would-heal-answer" });
  if (typeof answer.would_heal === "number") {
    line.textContent = `would_heal: ${num(answer.would_heal)} — this version passes ${plural(answer.would_heal, "pending dead letter")} of the subject.`;
  } else if (answer.would_heal_job) {
    line.textContent = "would_heal: counting (a dry-run heal job)…";
    followJob(answer.would_heal_job, (job) => {
      if (job.state === "done") line.textContent = `would_heal: ${num(job.counts.replayed)} (counted by job ${job.job_id}).`;
    }, alive).catch((error) => { line.textContent = `would_heal: not counted (${error.message}).`; });
  }
  return line;
}

export async function schemasPage(page, { arg }) {
  if (!can("schemas:read")) {
    fill(page, el("h1", {}, "Schemas"), note("This key may not read schemas (it needs schemas:read).", "error"));
    return null;
  }
  let alive = true;
  if (arg) await subjectPage(page, arg, () => alive);
  else await subjectsPage(page);
  return () => { alive = false; };
}
