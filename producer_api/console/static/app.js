// The console's shell: sign-in, navigation by the URL's hash, and one page at a time.

import { can, current, loadSession, signIn, signOut, whenSignedOut, ApiError } from "./api.js";
import { fill, note } from "./dom.js";
import { overviewPage } from "./overview.js";
import { deadLettersPage } from "./dead_letters.js";
import { deadLetterPage } from "./dead_letter.js";
import { lookupPage } from "./lookup.js";
import { keysPage } from "./keys.js";
import { schemasPage } from "./schemas.js";

const PAGES = {
  overview: overviewPage,
  "dead-letters": deadLettersPage,
  "dead-letter": deadLetterPage,
  lookup: lookupPage,
  schemas: schemasPage,
  keys: keysPage,
};

const $ = (id) => document.getElementById(id);
let stopPage = null;

/** The hash "#/name/arg?query" as {name, arg, params}. */
function route() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  return { name: name || "overview", arg: rest.map(decodeURIComponent).join("/"),
    params: new URLSearchParams(search || "") };
}

function showSignIn(message = "", kind = "error") {
  if (stopPage) stopPage();
  stopPage = null;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  fill($("page"));
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  $("sign-in-error").className = kind;
  $("key").focus();
}

async function render() {
  if (!current()) return showSignIn();
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  const who = current();
  $("who").textContent = `${who.tenant} · key ${who.prefix}`;
  for (const link of document.querySelectorAll("#nav a")) {
    link.hidden = Boolean(link.dataset.scope) && !can(link.dataset.scope);
  }
  const { name, arg, params } = route();
  for (const link of document.querySelectorAll("#nav a")) {
    const active = link.dataset.page === name || (name === "dead-letter" && link.dataset.page === "dead-letters");
    if (active) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (stopPage) stopPage();
  stopPage = null;
  const page = $("page");
  const build = PAGES[name];
  fill(page);
  if (!build) {
    fill(page, note("No such page.", "error"));
    return;
  }
  try {
    stopPage = (await build(page, { arg, params })) || null;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    fill(page, note(`Could not load this page: ${error.message}`, "error"));
  }
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = $("key");
  try {
    await signIn(field.value.trim());
    field.value = ""; // the key is not kept anywhere in the page
    if (!location.hash) location.hash = "#/overview";
    await render();
  } catch (error) {
    field.value = "";
    showSignIn(error instanceof ApiError && error.status === 401
      ? "That key was not accepted." : `Sign-in failed: ${error.message}`);
  }
});

$("sign-out").addEventListener("click", async () => {
  await signOut();
  showSignIn("Signed out.", "info");
});

whenSignedOut(() => showSignIn("Your session ended; sign in again."));
window.addEventListener("hashchange", () => { render(); });

(async () => {
  await loadSession();
  await render();
})();
