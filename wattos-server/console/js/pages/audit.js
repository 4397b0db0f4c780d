// Audit log search (GET /v1/admin/audit) with cursor paging and chain verification.

import { get, query } from "../api.js";
import { explain, fmtTime, h, mount, pill, table } from "../dom.js";

const toMs = (v) => (v ? Date.parse(`${v}:00Z`) : undefined);

export async function render(root) {
  const f = {
    action: h("input", { placeholder: "e.g. key.created", "data-testid": "audit-action" }),
    actor: h("input", { placeholder: "actor" }),
    target: h("input", { placeholder: "target" }),
    outcome: h("select", {}, ["", "success", "denied", "failure"].map((o) => h("option", { value: o }, o || "any"))),
    since: h("input", { type: "datetime-local" }),
    until: h("input", { type: "datetime-local" }),
  };
  const out = h("div");
  const more = h("div");
  const verifyOut = h("span");
  let rows = [];
  const load = async (before) => {
    const q = {
      action: f.action.value.trim(), actor: f.actor.value.trim(), target: f.target.value.trim(), outcome: f.outcome.value,
      since_ms: toMs(f.since.value), until_ms: toMs(f.until.value), before, limit: 50,
    };
    try {
      const page = await get(`/v1/admin/audit${query(q)}`);
      rows = before ? rows.concat(page.records) : page.records;
      mount(out, rows.length === 0 ? h("p", { class: "muted" }, "No matching events.") : table([
        { label: "#", num: true, value: (r) => r.seq },
        { label: "Time (UTC)", value: (r) => fmtTime(r.time_ms) },
        { label: "Action", value: (r) => h("code", {}, r.action) },
        { label: "Actor", value: (r) => r.actor },
        { label: "Target", value: (r) => r.target },
        { label: "Outcome", value: (r) => pill(r.outcome) },
        { label: "Detail", value: (r) => r.detail || "" },
        { label: "Request", value: (r) => h("code", { class: "muted" }, r.request_id) },
      ], rows, { testid: "audit-table", rowAttrs: (r) => ({ "data-action": r.action, "data-tenant": r.tenant }) }));
      mount(more, page.next_before ? h("button", { type: "button", class: "secondary", onclick: () => load(page.next_before) }, "Older events") : null);
    } catch (e) {
      mount(out, explain(e, "Audit search"));
      mount(more);
    }
  };
  root.append(
    h("form", { class: "card", onsubmit: (ev) => { ev.preventDefault(); load(); } },
      h("div", { class: "row" },
        h("label", {}, "Action", f.action), h("label", {}, "Actor", f.actor), h("label", {}, "Target", f.target),
        h("label", {}, "Outcome", f.outcome), h("label", {}, "From (UTC)", f.since), h("label", {}, "Until (UTC)", f.until),
        h("button", { type: "submit", "data-testid": "audit-search" }, "Search")),
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", "data-testid": "audit-verify", onclick: async () => {
          try {
            const r = await get("/v1/admin/audit/verify");
            mount(verifyOut, r.valid ? pill(`chain intact (${r.checked} records)`, "ok") : pill(`chain broken at ${r.broken_at}: ${r.reason}`, "bad"));
          } catch (e) {
            mount(verifyOut, explain(e, "Verification"));
          }
        } }, "Verify hash chain"), verifyOut)),
    h("div", { class: "card" }, out, more));
  await load();
}
