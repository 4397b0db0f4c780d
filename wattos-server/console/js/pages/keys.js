// Tenants and API keys: create (the secret is shown once, with a copy button), list and revoke
// the caller's tenant's keys; platform admins also manage tenants and mint keys for them.

import { del, get, patch, post } from "../api.js";
import { explain, fmtTime, h, mount, notice, pill, table } from "../dom.js";

const TENANT_ROLES = ["owner", "admin", "developer", "member", "viewer"];
const EXPIRY = [["never", ""], ["1 day", 86400], ["30 days", 30 * 86400], ["90 days", 90 * 86400]];

function keyStatus(k) {
  if (k.revoked_at_ms) return "revoked";
  if (k.expires_at_ms && k.expires_at_ms <= Date.now()) return "expired";
  return "active";
}

/** Shows a freshly minted secret once, with a copy button. */
function secretBox(created) {
  const code = h("code", { "data-testid": "new-secret" }, created.key);
  const status = h("span", { class: "muted" });
  const copy = h("button", {
    type: "button", class: "small", "data-testid": "copy-secret",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(created.key);
        status.textContent = "copied";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(code);
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        status.textContent = "selected: press Ctrl+C to copy";
      }
    },
  }, "Copy");
  return h("div", { class: "secret", role: "status" },
    h("strong", {}, `Key ${created.id} for tenant ${created.tenant}:`), code, copy, status,
    h("div", { class: "muted" }, "This is the only time the secret is shown. Store it now."));
}

function keyForm({ roles, onSubmit, label }) {
  const name = h("input", { name: "name", required: true, maxlength: 128, placeholder: "e.g. ci-pipeline", "data-testid": "key-name" });
  const boxes = roles.map((r) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "role", value: r, checked: r === "member", "data-testid": `role-${r}` }), ` ${r}`));
  const expiry = h("select", { name: "expires" }, EXPIRY.map(([t, v]) => h("option", { value: v }, t)));
  const out = h("div");
  const form = h("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const chosen = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
      const body = { name: name.value.trim(), roles: chosen };
      if (expiry.value) body.expires_in_secs = Number(expiry.value);
      try {
        const created = await onSubmit(body);
        mount(out, secretBox(created));
        name.value = "";
      } catch (e) {
        mount(out, explain(e, "Creating the key"));
      }
    },
  },
  h("div", { class: "row" }, h("label", {}, "Name", name), h("label", {}, "Expires", expiry)),
  h("div", { class: "row" }, h("span", { class: "muted" }, "Roles:"), boxes),
  h("button", { type: "submit", "data-testid": "create-key" }, label));
  return h("div", {}, form, out);
}

function revokeButton(k, onDone) {
  const cell = h("span");
  const start = () => mount(cell,
    h("button", { type: "button", class: "danger small", "data-testid": "confirm-revoke", onclick: confirm }, "Confirm revoke"), " ",
    h("button", { type: "button", class: "secondary small", onclick: reset }, "Cancel"));
  const reset = () => mount(cell, h("button", { type: "button", class: "secondary small", "data-testid": "revoke", onclick: start }, "Revoke"));
  async function confirm() {
    try {
      await del(`/v1/admin/keys/${encodeURIComponent(k.id)}`);
      onDone();
    } catch (e) {
      mount(cell, explain(e, "Revoking"));
    }
  }
  reset();
  return cell;
}

async function keysSection(root, ctx) {
  const list = h("div");
  const reload = async () => {
    try {
      const keys = await get("/v1/admin/keys");
      keys.sort((a, b) => b.created_at_ms - a.created_at_ms);
      mount(list, keys.length === 0 ? h("p", { class: "muted" }, "No keys yet.") : table([
        { label: "Id", value: (k) => h("code", {}, k.id) },
        { label: "Name", value: (k) => k.name },
        { label: "Roles", value: (k) => k.roles.join(", ") },
        { label: "Created", value: (k) => `${fmtTime(k.created_at_ms)} by ${k.created_by}` },
        { label: "Last used", value: (k) => fmtTime(k.last_used_at_ms) },
        { label: "Expires", value: (k) => fmtTime(k.expires_at_ms) },
        { label: "Status", value: (k) => pill(keyStatus(k), keyStatus(k) === "active" ? "ok" : "revoked") },
        { label: "", value: (k) => (keyStatus(k) === "active" && k.id !== ctx.session.subject ? revokeButton(k, reload) : "") },
      ], keys, { testid: "keys-table", rowAttrs: (k) => ({ "data-key-id": k.id, "data-key-name": k.name }) }));
    } catch (e) {
      mount(list, explain(e, "Listing keys"));
    }
  };
  const roles = ctx.can("platform:admin") ? [...TENANT_ROLES, "platform_admin"] : TENANT_ROLES;
  root.append(
    h("section", { class: "card" }, h("h2", {}, `New API key for tenant ${ctx.session.tenant}`),
      keyForm({ roles, label: "Create key", onSubmit: async (body) => { const c = await post("/v1/admin/keys", body); await reload(); return c; } })),
    h("section", { class: "card" }, h("h2", {}, `API keys of tenant ${ctx.session.tenant}`), list));
  await reload();
}

async function tenantsSection(root) {
  const list = h("div");
  const keyOut = h("div");
  const reload = async () => {
    try {
      const tenants = await get("/v1/admin/tenants?limit=500");
      mount(list, table([
        { label: "Id", value: (t) => h("code", {}, t.id) },
        { label: "Name", value: (t) => t.name },
        { label: "Created", value: (t) => fmtTime(t.created_at_ms) },
        { label: "Status", value: (t) => pill(t.disabled ? "disabled" : "enabled", t.disabled ? "bad" : "ok") },
        { label: "", value: (t) => h("span", {},
          h("button", { type: "button", class: "secondary small", onclick: async () => {
            try { await patch(`/v1/admin/tenants/${encodeURIComponent(t.id)}`, { disabled: !t.disabled }); await reload(); } catch (e) { mount(keyOut, explain(e, "Updating the tenant")); }
          } }, t.disabled ? "Enable" : "Disable"), " ",
          h("button", { type: "button", class: "secondary small", "data-testid": "tenant-new-key", onclick: () => mount(keyOut,
            h("h3", {}, `New key for tenant ${t.id}`),
            keyForm({ roles: TENANT_ROLES, label: `Create key for ${t.id}`, onSubmit: (body) => post(`/v1/admin/tenants/${encodeURIComponent(t.id)}/keys`, body) })) }, "New key…")) },
      ], tenants, { testid: "tenants-table", rowAttrs: (t) => ({ "data-tenant": t.id }) }));
    } catch (e) {
      mount(list, explain(e, "Listing tenants"));
    }
  };
  const id = h("input", { name: "id", required: true, pattern: "[a-z0-9][a-z0-9_-]*", placeholder: "acme" });
  const name = h("input", { name: "name", required: true, placeholder: "Acme GmbH" });
  const err = h("div");
  const form = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    try { await post("/v1/admin/tenants", { id: id.value.trim(), name: name.value.trim() }); id.value = ""; name.value = ""; mount(err); await reload(); } catch (e) { mount(err, explain(e, "Creating the tenant")); }
  } }, h("div", { class: "row" }, h("label", {}, "Id", id), h("label", {}, "Name", name), h("button", { type: "submit" }, "Create tenant")), err);
  root.append(h("section", { class: "card" }, h("h2", {}, "Tenants (platform administration)"), form, list, keyOut));
  await reload();
}

export async function render(root, ctx) {
  if (!ctx.session.auth) {
    root.append(notice("Authentication is off on this server (embedded mode): there are no API keys or tenants to manage."));
    return;
  }
  if (ctx.can("keys:manage")) await keysSection(root, ctx);
  if (ctx.can("platform:admin")) await tenantsSection(root);
}
