// The playground's result views: the latent hand-offs with a nearest-token peek, the answers, and the latent-vs-text
// table (read back from the DOM for tests).
import { $, el } from "./dom.js";
import { meanRowNorm, nearest, MAX_IDS } from "./peek.js";

const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? "-" : Number(v).toFixed(d));

// The nearest-token peek of every hand-off of a latent run (on the receiver's model): [{edge, round, rows, dim,
// mean_row_norm, nearest: [{id, text, cos}]}], plus the note on how the vocabulary was searched.
export async function peekHandoffs(sys, res) {
  const out = [];
  let note = null;
  for (const h of res.handoffs) {
    const dst = h.edge.split("->")[1].split(":")[0];
    const agent = sys.agents[dst];
    const pk = await nearest(agent.model, h.block.data.subarray(0, h.block.dim), 3);
    note = pk;
    const toks = pk.best.map((b) => ({ id: b.id, text: agent.codec.decode([b.id], { skipSpecialTokens: false }),
      cos: b.cos }));
    out.push({ edge: h.edge, round: h.round, rows: h.block.rows, dim: h.block.dim,
      mean_row_norm: meanRowNorm(h.block), nearest: toks });
  }
  const text = note ? (note.sampled
    ? `Nearest tokens by cosine among ${note.size} evenly sampled token ids of ${note.vocab} (embedding the full ` +
      `vocabulary with the model's embed is too costly here; at most ${MAX_IDS}).`
    : `Nearest tokens by cosine over the full vocabulary (${note.vocab} ids), using the model's embed.`) : "";
  return { rows: out, note: text };
}

// The hand-off table from peekHandoffs' rows (a loaded run file has them too).
export function showHandoffs(rows, note = "") {
  const tb = $("handoffs").tBodies[0];
  tb.replaceChildren();
  for (const row of rows ?? []) {
    const tr = el("tr");
    tr.append(el("td", row.edge), el("td", row.round), el("td", row.rows), el("td", fmt(row.mean_row_norm, 3)),
      el("td", row.nearest.map((t) => `${JSON.stringify(t.text)} (${fmt(t.cos, 3)})`).join(", ")));
    tb.append(tr);
  }
  $("peek-note").textContent = note;
}

const LABEL = { single: "one agent", text: "text MAS", latent: "latent MAS" };

// One answer card per mode, side by side; `meta` is the line under it (tokens and time).
export function showAnswer(mode, answer, meta = "") {
  let d = $(`answer-${mode}`);
  if (!d) {
    const box = el("div", null, { className: "answer-card" });
    d = el("div", "", { id: `answer-${mode}`, className: "answer" });
    box.append(el("h3", LABEL[mode] ?? mode), d, el("div", "", { id: `answer-meta-${mode}`, className: "muted" }));
    $("answers").append(box);
  }
  d.textContent = answer;
  $(`answer-meta-${mode}`).textContent = meta;
}

export function answerMeta(m) {
  return `${m.generated_tokens} generated tokens · ${m.latent_steps} latent steps · ` +
    `${fmt(m.e2e_latency_s, 2)} s end to end`;
}

const COLS = ["mode", "prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps", "e2e_ms", "prefill_tok_s",
  "decode_tok_s", "speedup", "handoff_bytes"];

// Hand-off bytes: latent frames (measured on the wire when roles ran on another machine) or text messages.
function bytesCell(r, mode) {
  if (mode === "single") return "-";
  const w = r.wire;
  const b = r.metrics.handoff_bytes;
  if (b === undefined || b === null) return "-";
  return w ? `${b} (${w.bytes_sent + w.bytes_received} crossed)` : String(b);
}

export function showTable(results) {
  const tb = $("compare").tBodies[0];
  tb.replaceChildren();
  const text = results.text?.metrics;
  for (const mode of ["single", "latent", "text"]) {
    const r = results[mode];
    if (!r) continue;
    const m = r.metrics;
    const e2e = m.e2e_latency_s * 1000;
    const vsText = text ? `${fmt(text.e2e_latency_s * 1000 / e2e, 2)}x` : "-";
    const speed = mode === "text" ? "1.00x" : vsText;
    const tr = el("tr", null, { id: `row-${mode}` });
    for (const v of [mode, m.prompt_tokens, m.reused_tokens, m.generated_tokens, m.latent_steps, fmt(e2e, 0),
      fmt(m.prefill_tokens_per_s), fmt(m.decode_tokens_per_s, 2), speed, bytesCell(r, mode)]) tr.append(el("td", v));
    tb.append(tr);
  }
}

// The table as the DOM shows it: [{mode, prompt_tokens, ...}] (strings as displayed).
export function readTable() {
  return Array.from($("compare").tBodies[0].rows, (tr) =>
    Object.fromEntries(COLS.map((c, i) => [c, tr.cells[i].textContent])));
}
