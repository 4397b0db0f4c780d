// RAG playground: ask a collection, read the answer with clickable [n] citations, and see every
// retrieved chunk with its score (POST /v1/rag/collections/{c}/answer and /search).

import { get, post } from "../api.js";
import { explain, fmtNum, h, mount, pill } from "../dom.js";

const enc = encodeURIComponent;

function sourceCard(src, cited) {
  const where = [src.title, src.section, src.location].filter(Boolean).join(" · ");
  return h("div", { class: "source", id: `source-${src.number}`, tabindex: "-1", "data-testid": "source", "data-number": src.number, "data-chunk": src.chunk_id },
    h("div", { class: "meta" },
      h("strong", {}, `[${src.number}]`),
      h("span", {}, h("code", {}, src.document_id)),
      where ? h("span", {}, where) : null,
      h("span", { "data-testid": "score" }, `score ${Number(src.score).toFixed(4)}`),
      cited ? pill("cited", "ok") : null,
      src.start_char != null && src.end_char != null ? h("span", {}, `chars ${src.start_char}–${src.end_char}`) : null),
    h("div", {}, src.text));
}

function focusSource(list, n) {
  for (const el of list.querySelectorAll(".source.highlight")) el.classList.remove("highlight");
  const el = list.querySelector(`#source-${n}`);
  if (!el) return;
  el.classList.add("highlight");
  el.scrollIntoView({ block: "center" });
  el.focus({ preventScroll: true });
}

/** The answer text with each valid [n] turned into a link to source n. */
function answerText(answer, numbers, list) {
  const out = h("div", { class: "answer", "data-testid": "answer" });
  const re = /\[(\d+)\]/g;
  let last = 0, m;
  while ((m = re.exec(answer))) {
    out.append(answer.slice(last, m.index));
    const n = Number(m[1]);
    if (numbers.has(n)) {
      out.append(h("a", { href: `#/rag`, class: "cite", "data-cite": n, onclick: (ev) => { ev.preventDefault(); focusSource(list, n); } }, `[${n}]`));
    } else {
      out.append(m[0]);
    }
    last = m.index + m[0].length;
  }
  out.append(answer.slice(last));
  return out;
}

function drawAnswer(out, res) {
  const cited = new Set((res.citations || []).map((c) => c.number));
  const sources = res.sources || [];
  const list = h("div", { "data-testid": "sources" });
  mount(list, sources.map((s) => sourceCard(s, cited.has(s.number))));
  mount(out,
    h("div", { class: "card" }, h("h2", {}, "Answer"), answerText(res.answer || "", new Set(sources.map((s) => s.number)), list),
      h("p", { class: "muted" }, `${res.model} · ${fmtNum(res.usage?.input_tokens)} in / ${fmtNum(res.usage?.output_tokens)} out tokens`,
        (res.invalid_citations || []).length ? ` · removed invalid citations: ${res.invalid_citations.join(", ")}` : "")),
    h("div", { class: "card" }, h("h2", {}, `Retrieved chunks (${sources.length})`), list));
}

function drawHits(out, hits) {
  const max = Math.max(...hits.map((x) => x.score), 1e-9);
  mount(out, h("div", { class: "card" }, h("h2", {}, `Search hits (${hits.length})`),
    h("div", { "data-testid": "hits" }, hits.map((x, i) => h("div", { class: "source", "data-testid": "hit" },
      h("div", { class: "meta" }, h("strong", {}, `#${i + 1}`), h("code", {}, x.document_id),
        h("span", { "data-testid": "score" }, `score ${Number(x.score).toFixed(4)}`),
        h("span", { class: "score-bar", "data-w": Math.round((x.score / max) * 100) })),
      h("div", {}, x.text))))));
  // Widths via the CSSOM (allowed by the CSP, unlike inline style attributes).
  for (const bar of out.querySelectorAll(".score-bar")) bar.style.width = `${bar.dataset.w}px`;
}

export async function render(root) {
  let collections;
  try {
    collections = (await get("/v1/rag/collections")).data;
  } catch (e) {
    root.append(explain(e, "The RAG API"));
    return;
  }
  if (collections.length === 0) {
    root.append(h("p", { class: "muted" }, "This tenant has no collections yet. Ingest documents through POST /v1/rag/collections."));
    return;
  }
  const coll = h("select", { "data-testid": "collection" }, collections.map((c) =>
    h("option", { value: c.id }, `${c.id} (${c.document_count} docs, ${c.chunk_count} chunks)`)));
  const question = h("textarea", { "data-testid": "question", placeholder: "Ask a question about the documents", required: true });
  const topK = h("input", { type: "number", min: 1, max: 100, value: 5 });
  const mode = h("select", {}, ["hybrid", "dense", "keyword"].map((m) => h("option", { value: m }, m)));
  const out = h("div");
  const busy = (on) => { for (const b of root.querySelectorAll("button")) b.disabled = on; };
  const run = async (kind) => {
    const q = question.value.trim();
    if (!q) return;
    busy(true);
    mount(out, h("p", { class: "muted" }, kind === "answer" ? "Answering…" : "Searching…"));
    const path = `/v1/rag/collections/${enc(coll.value)}/${kind}`;
    try {
      if (kind === "answer") drawAnswer(out, await post(path, { question: q, top_k: Number(topK.value), mode: mode.value }));
      else drawHits(out, (await post(path, { query: q, top_k: Number(topK.value), mode: mode.value })).data);
    } catch (e) {
      mount(out, explain(e, kind === "answer" ? "Answering" : "Searching"));
    } finally {
      busy(false);
    }
  };
  root.append(h("section", { class: "card" },
    h("div", { class: "row" }, h("label", {}, "Collection", coll), h("label", {}, "Top k", topK), h("label", {}, "Mode", mode)),
    question,
    h("div", { class: "row" },
      h("button", { type: "button", "data-testid": "ask", onclick: () => run("answer") }, "Ask"),
      h("button", { type: "button", class: "secondary", "data-testid": "search", onclick: () => run("search") }, "Search only"))),
  out);
}
