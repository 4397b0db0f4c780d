// The console shell: login with an API key, the caller's session, navigation limited to what the
// key may do, and a hash router over the page modules.

import { ApiError, forgetKey, get, setUnauthenticatedHandler, storeKey, storedKey } from "./api.js";
import { h, mount, notice } from "./dom.js";
import * as keys from "./pages/keys.js";
import * as usage from "./pages/usage.js";
import * as health from "./pages/health.js";
import * as rag from "./pages/rag.js";
import * as agents from "./pages/agents.js";
import * as audit from "./pages/audit.js";

// Each page names the permissions that let a key use it (any of them). The server enforces them
// again on every call; hiding is for the operator's clarity, not for security.
const PAGES = [
  { id: "health", title: "Health", perms: null, mod: health },
  { id: "usage", title: "Usage & cost", perms: ["usage:read"], mod: usage },
  { id: "keys", title: "Tenants & keys", perms: ["keys:manage", "platform:admin"], mod: keys },
  { id: "rag", title: "RAG playground", perms: ["rag:query"], mod: rag },
  { id: "agents", title: "Agent runs", perms: ["agents:run", "agents:resume"], mod: agents },
  { id: "audit", title: "Audit log", perms: ["audit:read"], mod: audit },
];

const $ = (id) => document.getElementById(id);
let session = null;
let cleanup = null;
let routeSeq = 0;

function can(perm) {
  return !!session && session.permissions.includes(perm);
}

function allowed(page) {
  return !page.perms || page.perms.some(can);
}

function showLogin(message) {
  session = null;
  routeSeq++;
  if (cleanup) cleanup();
  cleanup = null;
  $("page").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  const err = $("login-error");
  err.hidden = !message;
  err.textContent = message || "";
  $("login-key").focus();
}

async function startSession() {
  try {
    session = await get("/v1/console/session");
  } catch (e) {
    forgetKey();
    showLogin(e instanceof ApiError && e.status === 401 ? "This key is not valid (unknown, revoked or expired)." : e.message);
    return;
  }
  $("login").hidden = true;
  $("who").hidden = false;
  $("who-text").textContent = `${session.subject} · tenant ${session.tenant} · ${session.roles.join(", ") || "no roles"}`;
  $("who-text").dataset.tenant = session.tenant;
  mount($("nav"), PAGES.filter(allowed).map((p) => h("a", { href: `#/${p.id}`, "data-page": p.id }, p.title)));
  $("nav").hidden = false;
  $("page").hidden = false;
  route();
}

function route() {
  if (!session) return;
  const id = (location.hash.replace(/^#\//, "") || "health").split("/")[0];
  const page = PAGES.find((p) => p.id === id) || PAGES[0];
  for (const a of $("nav").querySelectorAll("a")) a.classList.toggle("active", a.dataset.page === page.id);
  if (cleanup) cleanup();
  cleanup = null;
  const root = mount($("page"));
  root.dataset.page = page.id;
  root.append(h("h1", {}, page.title));
  if (!allowed(page)) {
    root.append(notice(`Your key (${session.roles.join(", ")}) may not use this page.`, "forbidden"));
    return;
  }
  const body = h("div");
  root.append(body);
  const ctx = { session, can };
  const seq = ++routeSeq;
  Promise.resolve(page.mod.render(body, ctx))
    .then((stop) => {
      if (typeof stop !== "function") return;
      // The operator may have moved on while the page was loading: stop its polling at once.
      if (seq === routeSeq && session) cleanup = stop;
      else stop();
    })
    .catch((e) => body.append(h("p", { class: "error", role: "alert" }, String(e.message || e))));
}

function init() {
  setUnauthenticatedHandler(() => {
    forgetKey();
    showLogin("The server no longer accepts this key (revoked or expired). Log in again.");
  });
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("login-key").value.trim();
    if (!key) return;
    $("login-key").value = "";
    storeKey(key);
    startSession();
  });
  $("logout").addEventListener("click", () => {
    forgetKey();
    showLogin("");
  });
  window.addEventListener("hashchange", route);
  if (storedKey()) startSession();
  else showLogin("");
}

init();
