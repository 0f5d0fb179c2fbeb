// The console is a client of Sluice's own routes. The session cookie (HttpOnly: this code
// never sees it) authenticates; every write carries the session's CSRF token.

let session = null;

export class ApiError extends Error {
  constructor(status, body) {
    // Sluice's routes answer {"error": {code, message}}; the schema registry, in Confluent's
    // shape, {"error_code", "message"}.
    const registry = body && typeof body === "object" && "error_code" in body;
    const message = body && body.error ? body.error.message : registry ? body.message : `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body;
    this.code = body && body.error ? body.error.code : registry ? String(body.error_code) : "";
  }
}

export const current = () => session;

/** Whether the signed-in key holds `scope` (admin holds every scope). */
export function can(scope) {
  return Boolean(session) && (session.scopes.includes(scope) || session.scopes.includes("admin"));
}

let onSignedOut = () => {};
export function whenSignedOut(callback) { onSignedOut = callback; }

function query(params) {
  const kept = Object.entries(params || {}).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return kept.length ? `?${new URLSearchParams(kept)}` : "";
}

/** Call a route; JSON in and out. Throws ApiError on a non-2xx answer. */
export async function call(method, path, { json, body, contentType, params, accept } = {}) {
  const headers = {};
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf_token;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  if (accept) headers.Accept = accept;
  const answer = await fetch(path + query(params), {
    method, headers, body, credentials: "same-origin", cache: "no-store",
  });
  const text = await answer.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (answer.status === 401 && !path.startsWith("/console/session")) {
    session = null;
    onSignedOut();
  }
  if (!answer.ok) throw new ApiError(answer.status, data);
  return { status: answer.status, data };
}

export async function loadSession() {
  try {
    session = (await call("GET", "/console/session")).data;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    session = null;
  }
  return session;
}

export async function signIn(key) {
  session = (await call("POST", "/console/session", { json: { key } })).data;
  return session;
}

export async function signOut() {
  try { await call("DELETE", "/console/session"); } finally { session = null; }
}
