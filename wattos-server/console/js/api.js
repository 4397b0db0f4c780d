// The console's only way to the server: the public HTTP API with the operator's key.
// The key lives in sessionStorage (this tab only) and is sent as `Authorization: Bearer`.

const KEY = "wattos.console.key";

/** An error answered by the API (`{"error": {"message", "code", ...}}`) or by the network. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** The route is not on this server (not deployed yet) or the feature is switched off (503). */
  get unavailable() {
    return (this.status === 404 && /^no route for /.test(this.message)) || this.status === 503;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

let onUnauthenticated = () => {};

/** Called when the server answers 401 (key revoked or expired): the app returns to the login. */
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

/**
 * Calls the API. `body` is sent as JSON. Resolves with the parsed JSON (or text for non-JSON
 * answers); rejects with ApiError.
 */
export async function api(method, path, body, { auth = true } = {}) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (auth && key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the server: ${e.message}`);
  }
  const type = resp.headers.get("content-type") || "";
  const data = type.includes("json") ? await resp.json().catch(() => null) : await resp.text();
  if (!resp.ok) {
    const err = data && data.error ? data.error : {};
    const e = new ApiError(resp.status, err.code || `http_${resp.status}`, err.message || `HTTP ${resp.status}`);
    if (resp.status === 401 && auth) onUnauthenticated(e);
    throw e;
  }
  return data;
}

export const get = (path, opts) => api("GET", path, undefined, opts);
export const post = (path, body) => api("POST", path, body);
export const del = (path) => api("DELETE", path);
export const patch = (path, body) => api("PATCH", path, body);

/** Builds a query string from the defined, non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
