// Keys (admin scope): list, create (the key shown once), rotate, revoke.

import { call, current } from "./api.js";
import { el, fill, note, stamp } from "./dom.js";

const SCOPES = ["events:write", "events:read", "events:delete", "deadletters:read",
  "deadletters:replay", "schemas:read", "schemas:write", "admin"];

function shownOnce(box, key, what) {
  const field = el("input", { class: "mono secret", readonly: true, value: key, "aria-label": "the new key", size: 60 });
  fill(box, el("div", { class: "once", role: "status" }, el("strong", {}, `${what}. Copy it now: it is shown only once.`), field));
  field.select();
}

async function table(box, once, reload) {
  const { data } = await call("GET", "/v1/admin/keys");
  const mine = current().prefix;
  fill(box, el("table", { class: "table" },
    el("thead", {}, el("tr", {}, ["prefix", "label", "scopes", "state", "created", "expires", ""].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, data.keys.map((k) => {
      const live = k.state === "active" || k.state === "expiring";
      const rotate = el("button", { type: "button", class: "secondary" }, "Rotate");
      rotate.addEventListener("click", async () => {
        const { data: made } = await call("POST", `/v1/admin/keys/${k.prefix}/rotate`, { json: { overlap_seconds: 3600 } });
        shownOnce(once, made.key, `New key ${made.prefix} replaces ${k.prefix} (which works one more hour)`);
        await reload();
      });
      const revoke = el("button", { type: "button", class: "danger" }, "Revoke");
      revoke.addEventListener("click", async () => {
        if (!confirm(`Revoke key ${k.prefix}? Everything using it stops working.`)) return;
        await call("DELETE", `/v1/admin/keys/${k.prefix}`);
        await reload();
      });
      return el("tr", { "data-prefix": k.prefix },
        el("td", { class: "mono" }, k.prefix, k.prefix === mine ? el("span", { class: "pill" }, "this session") : null),
        el("td", {}, k.label), el("td", { class: "scopes" }, k.scopes.join(" ")),
        el("td", {}, el("span", { class: `pill ${k.state}` }, k.state)), el("td", {}, stamp(k.created_at)),
        el("td", {}, k.expires_at ? stamp(k.expires_at) : "–"),
        el("td", {}, live ? el("div", { class: "buttons" }, rotate, revoke) : null));
    }))));
}

export async function keysPage(page) {
  const once = el("div");
  const box = el("section", { class: "card" }, note("Loading keys…"));
  const label = el("input", { name: "label", id: "new-label", maxlength: 200 });
  const boxes = SCOPES.map((s) => el("label", { class: "check" },
    el("input", { type: "checkbox", name: "scope", value: s, checked: !["admin", "schemas:write"].includes(s) }), ` ${s}`));
  const form = el("form", { class: "card filters", "aria-label": "Create a key" },
    el("h2", {}, "Create a key"), el("label", { for: "new-label" }, "Label", label),
    el("fieldset", { class: "scopes-box" }, el("legend", {}, "Scopes"), boxes),
    el("div", { class: "buttons" }, el("button", { type: "submit" }, "Create key")));
  const reload = () => table(box, once, reload).catch((e) => fill(box, note(e.message, "error")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const scopes = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    try {
      const { data } = await call("POST", "/v1/admin/keys", { json: { label: label.value, scopes } });
      shownOnce(once, data.key, `Key ${data.prefix} created`);
      label.value = "";
      await reload();
    } catch (error) {
      fill(once, note(`Not created: ${error.message}`, "error"));
    }
  });
  fill(page, el("h1", {}, "Keys of ", current().tenant), once, form, box);
  await reload();
}
