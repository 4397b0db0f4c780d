// Agent runs: pending human approvals (approve / edit / reject), a run's step timeline from its
// thread's checkpoints, and starting a run of a registered graph (the /v1/agents API).

import { get, post, query } from "../api.js";
import { explain, fmtTime, h, mount, pill, table } from "../dom.js";

const enc = encodeURIComponent;
const json = (v) => JSON.stringify(v, null, 2);

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${e.message}`);
  }
}

function approvalCard(run, ctx, onDone) {
  const out = h("div");
  const value = h("textarea", { "data-testid": "edit-value" }, json(run.state && run.state.draft !== undefined ? { draft: run.state.draft } : {}));
  const reason = h("input", { placeholder: "reason (optional)", "data-testid": "reject-reason" });
  const resume = async (action) => {
    const body = { action };
    try {
      if (action === "edit") body.value = parseJson(value.value, "The edit");
      if (action === "reject" && reason.value.trim()) body.reason = reason.value.trim();
      const res = await post(`/v1/agents/runs/${enc(run.id)}/resume`, body);
      mount(out, h("p", { "data-testid": "resume-result" }, `Run ${res.id} is now `, pill(res.status)));
      onDone();
    } catch (e) {
      mount(out, explain(e, "Resuming"));
    }
  };
  const canResume = ctx.can("agents:resume");
  return h("div", { class: "approval", "data-testid": "approval", "data-run": run.id },
    h("div", {}, h("strong", {}, `${run.graph} `), h("code", {}, run.id), ` · thread ${run.thread_id} · step ${run.steps} · ${fmtTime(run.updated_at_ms)}`),
    (run.interrupts || []).map((i) => h("div", {}, `Waiting ${i.kind} `, h("code", {}, i.node), i.value !== null && i.value !== undefined ? h("pre", {}, json(i.value)) : null)),
    run.state ? h("details", {}, h("summary", {}, "State"), h("pre", {}, json(run.state))) : null,
    canResume ? h("div", {},
      h("div", { class: "row" },
        h("button", { type: "button", "data-testid": "approve", onclick: () => resume("approve") }, "Approve"),
        h("button", { type: "button", class: "secondary", "data-testid": "edit", onclick: () => resume("edit") }, "Apply edit and continue"),
        reason,
        h("button", { type: "button", class: "danger", "data-testid": "reject", onclick: () => resume("reject") }, "Reject")),
      h("label", { class: "muted" }, "Edit (state update, JSON):"), value)
      : h("p", { class: "muted" }, "Your key may not resume runs (agents:resume)."),
    out);
}

async function drawApprovals(out, ctx, reload) {
  try {
    const list = (await get(`/v1/agents/runs${query({ status: "interrupted", limit: 50 })}`)).data;
    if (list.length === 0) {
      mount(out, h("p", { class: "muted", "data-testid": "no-approvals" }, "No run is waiting for approval."));
      return;
    }
    const runs = await Promise.all(list.map((r) => get(`/v1/agents/runs/${enc(r.id)}`)));
    mount(out, runs.map((r) => approvalCard(r, ctx, reload)));
  } catch (e) {
    mount(out, explain(e, "The agents API"));
  }
}

async function drawRun(out, id) {
  mount(out, h("p", { class: "muted" }, "Loading…"));
  try {
    const run = await get(`/v1/agents/runs/${enc(id)}`);
    const cps = (await get(`/v1/agents/threads/${enc(run.thread_id)}/checkpoints${query({ limit: 200 })}`)).data;
    const steps = [...cps].sort((a, b) => a.step - b.step);
    mount(out,
      h("h2", {}, `Run `, h("code", {}, run.id), " ", pill(run.status)),
      h("p", { class: "muted" }, `${run.graph} · thread ${run.thread_id} · ${run.steps} steps · started ${fmtTime(run.created_at_ms)} · updated ${fmtTime(run.updated_at_ms)}`),
      run.error ? h("p", { class: "error" }, `${run.error.code}: ${run.error.message}`) : null,
      run.reason ? h("p", { class: "muted" }, `Reason: ${run.reason}`) : null,
      h("h3", {}, "Step timeline (checkpoints)"),
      steps.length === 0 ? h("p", { class: "muted" }, "No checkpoints.") :
        h("ol", { class: "timeline", "data-testid": "timeline" }, steps.map((c) => h("li", { class: c.next.length && run.status === "interrupted" && c.id === run.checkpoint ? "interrupt" : "" },
          h("strong", {}, `step ${c.step}`), ` · ${typeof c.source === "string" ? c.source : JSON.stringify(c.source)}`,
          c.next.length ? h("span", {}, " · next: ", c.next.map((n) => h("code", {}, n, " "))) : h("span", { class: "muted" }, " · end"),
          Object.keys(c.metadata || {}).length ? h("details", {}, h("summary", {}, "metadata"), h("pre", {}, json(c.metadata))) : null,
          h("div", { class: "muted mono" }, c.id)))),
      run.interrupts && run.interrupts.length ? h("div", {}, h("h3", {}, "Pending interrupts"), h("pre", {}, json(run.interrupts))) : null,
      h("h3", {}, "State"), h("pre", {}, json(run.state)));
  } catch (e) {
    mount(out, explain(e, "Loading the run"));
  }
}

async function drawRuns(out, detail, status) {
  try {
    const runs = (await get(`/v1/agents/runs${query({ status, limit: 100 })}`)).data;
    mount(out, runs.length === 0 ? h("p", { class: "muted" }, "No runs.") : table([
      { label: "Run", value: (r) => h("code", {}, r.id) },
      { label: "Graph", value: (r) => r.graph },
      { label: "Thread", value: (r) => r.thread_id },
      { label: "Status", value: (r) => pill(r.status) },
      { label: "Steps", num: true, value: (r) => r.steps },
      { label: "Updated", value: (r) => fmtTime(r.updated_at_ms) },
    ], runs, { testid: "runs", rowAttrs: (r) => ({ class: "clickable", "data-run": r.id, onclick: () => drawRun(detail, r.id) }) }));
  } catch (e) {
    mount(out, explain(e, "Listing runs"));
  }
}

async function startForm(ctx, onStarted) {
  let graphs;
  try {
    graphs = (await get("/v1/agents/graphs")).data;
  } catch (e) {
    return explain(e, "The agents API");
  }
  if (graphs.length === 0) return h("p", { class: "muted" }, "No agent graph is registered on this server.");
  const input = h("textarea", { "data-testid": "run-input" }, json(graphs[0].input_example));
  const graph = h("select", { "data-testid": "graph", onchange: () => { input.value = json(graphs.find((g) => g.name === graph.value).input_example); } },
    graphs.map((g) => h("option", { value: g.name }, `${g.name}: ${g.description}`)));
  const out = h("div");
  return h("div", {},
    h("div", { class: "row" }, h("label", {}, "Graph", graph)),
    input,
    h("button", { type: "button", "data-testid": "start-run", disabled: !ctx.can("agents:run"), onclick: async () => {
      try {
        const run = await post(`/v1/agents/graphs/${enc(graph.value)}/runs`, { input: parseJson(input.value, "The input") });
        mount(out, h("p", {}, "Run ", h("code", {}, run.id), " ", pill(run.status)));
        onStarted(run);
      } catch (e) {
        mount(out, explain(e, "Starting the run"));
      }
    } }, "Start run"),
    out);
}

export async function render(root, ctx) {
  const approvals = h("div");
  const runs = h("div");
  const detail = h("div");
  const status = h("select", { "data-testid": "status-filter", onchange: () => drawRuns(runs, detail, status.value) },
    ["", "running", "completed", "interrupted", "rejected", "failed"].map((s) => h("option", { value: s }, s || "any status")));
  const reload = () => Promise.all([drawApprovals(approvals, ctx, reload), drawRuns(runs, detail, status.value)]);
  root.append(
    h("section", { class: "card" }, h("h2", {}, "Waiting for approval"), approvals),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Runs"), h("div", { class: "row" }, h("label", {}, "Status", status),
        h("button", { type: "button", class: "secondary", onclick: reload }, "Refresh")), runs),
      h("section", { class: "card", "data-testid": "run-detail" }, detail)),
    h("section", { class: "card" }, h("h2", {}, "Start a run"), await startForm(ctx, (run) => { reload(); drawRun(detail, run.id); })));
  await reload();
}
