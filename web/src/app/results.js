// The playground's result views: the latent hand-offs with a nearest-token peek, the answers, and the latent-vs-text
// table (read back from the DOM for tests).
import { $, el } from "./dom.js";
import { meanRowNorm, nearest, MAX_IDS } from "./peek.js";

const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? "-" : Number(v).toFixed(d));

export async function showHandoffs(sys, res) {
  const tb = $("handoffs").tBodies[0];
  tb.replaceChildren();
  const out = [];
  let note = null;
  for (const h of res.handoffs) {
    const dst = h.edge.split("->")[1].split(":")[0];
    const agent = sys.agents[dst];
    const model = agent.model;
    const pk = await nearest(model, h.block.data.subarray(0, h.block.dim), 3);
    note = pk;
    const toks = pk.best.map((b) => ({ id: b.id, text: agent.codec.decode([b.id], { skipSpecialTokens: false }),
      cos: b.cos }));
    const row = { edge: h.edge, round: h.round, rows: h.block.rows, dim: h.block.dim,
      mean_row_norm: meanRowNorm(h.block), nearest: toks };
    out.push(row);
    const tr = el("tr");
    tr.append(el("td", h.edge), el("td", h.round), el("td", h.block.rows), el("td", fmt(row.mean_row_norm, 3)),
      el("td", toks.map((t) => `${JSON.stringify(t.text)} (${fmt(t.cos, 3)})`).join(", ")));
    tb.append(tr);
  }
  $("peek-note").textContent = note ? (note.sampled
    ? `Nearest tokens by cosine among ${note.size} evenly sampled token ids of ${note.vocab} (embedding the full ` +
      `vocabulary with the model's embed is too costly here; at most ${MAX_IDS}).`
    : `Nearest tokens by cosine over the full vocabulary (${note.vocab} ids), using the model's embed.`) : "";
  return out;
}

export function showAnswer(mode, answer) {
  let d = $(`answer-${mode}`);
  if (!d) {
    const box = el("div");
    d = el("div", "", { id: `answer-${mode}`, className: "answer" });
    box.append(el("h3", mode), d);
    $("answers").append(box);
  }
  d.textContent = answer;
}

const COLS = ["mode", "prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps", "e2e_ms", "prefill_tok_s",
  "decode_tok_s", "speedup"];

export function showTable(results) {
  const tb = $("compare").tBodies[0];
  tb.replaceChildren();
  const text = results.text?.metrics;
  for (const mode of ["latent", "text"]) {
    const r = results[mode];
    if (!r) continue;
    const m = r.metrics;
    const e2e = m.e2e_latency_s * 1000;
    const speed = text && mode === "latent" ? `${fmt(text.e2e_latency_s * 1000 / e2e, 2)}x` : mode === "text" ? "1.00x" : "-";
    const tr = el("tr", null, { id: `row-${mode}` });
    for (const v of [mode, m.prompt_tokens, m.reused_tokens, m.generated_tokens, m.latent_steps, fmt(e2e, 0),
      fmt(m.prefill_tokens_per_s), fmt(m.decode_tokens_per_s, 2), speed]) tr.append(el("td", v));
    tb.append(tr);
  }
}

// The table as the DOM shows it: [{mode, prompt_tokens, ...}] (strings as displayed).
export function readTable() {
  return Array.from($("compare").tBodies[0].rows, (tr) =>
    Object.fromEntries(COLS.map((c, i) => [c, tr.cells[i].textContent])));
}
