// The transcript: every agent's turn, per round, one column per mode (single agent, text MAS, latent MAS) side by
// side. A turn shows the prompt the agent got (its user template, the question filled in, slots marked), what landed
// in each slot (a text message, or a latent block: rows, mean row norm, nearest tokens), the time of each stage, and
// what it wrote, streamed token by token while it runs.
// Drawn from a run record (run-file.js) only, so a downloaded run loads back into the same DOM; live() shows the
// turns as they happen and finish() redraws the column from the record.
import { $, el } from "./dom.js";

const LABEL = { single: "one agent", text: "text MAS", latent: "latent MAS" };
const fmt = (v, d = 0) => (v === null || v === undefined || Number.isNaN(v) ? "-" : Number(v).toFixed(d));

// Prompt positions each agent prefilled or reused, summed over its rounds: {agent: tokens}.
export function agentTokens(metrics) {
  const out = {};
  for (const s of metrics?.stages ?? []) {
    if (s.stage === "prefill") out[s.agent] = (out[s.agent] ?? 0) + s.tokens + (s.reused ?? 0);
  }
  return out;
}

// The user template as the agent saw it: the question filled in, each slot as ⟨slot⟩.
export function filledPrompt(template, question) {
  return String(template ?? "").replace(/\{([\p{L}\p{N}_]+)\}/gu,
    (m, k) => (k === "question" ? question : `⟨${k}⟩`));
}

function stageText(s) {
  const reused = s.reused ? ` (+${s.reused} reused)` : "";
  if (s.stage === "prefill") return `prefill ${s.tokens} tok${reused} ${fmt(s.ms)} ms`;
  if (s.stage === "latent") return `latent ${s.steps} steps ${fmt(s.ms)} ms`;
  return `decode ${s.tokens} tok ${fmt(s.ms)} ms`;
}

function blockText(h) {
  const near = (h.nearest ?? []).map((t) => `${JSON.stringify(t.text)} ${fmt(t.cos, 2)}`).join(", ");
  return `${h.rows} latent rows, mean norm ${fmt(h.mean_row_norm, 3)}${near ? `; nearest tokens: ${near}` : ""}`;
}

function turnCard(turn, res, prompts, question) {
  const card = el("article", null, { className: `turn${turn.final ? " final" : ""}` });
  card.dataset.agent = turn.agent;
  card.dataset.round = turn.round;
  const head = el("header");
  head.append(el("strong", turn.agent), el("span", `round ${turn.round + 1}`, { className: "muted" }));
  card.append(head);
  card.append(el("div", filledPrompt(prompts?.[turn.agent]?.user, question), { className: "prompt" }));
  for (const inp of turn.inputs ?? []) {
    const h = (res.handoffs ?? []).find((x) => x.edge === inp.edge && x.round === turn.round);
    const what = inp.text !== undefined ? JSON.stringify(inp.text) : h ? blockText(h) : "a latent block";
    card.append(el("div", `⟨${inp.slot}⟩ ← ${inp.src}: ${what}`, { className: "input" }));
  }
  const stages = (res.metrics?.stages ?? []).filter((s) => s.agent === turn.agent && s.round === turn.round);
  card.append(el("div", stages.map(stageText).join(" · "), { className: "stages" }));
  const wrote = turn.text ?? (stages.some((s) => s.stage === "latent") ? "(thinks in latent steps, writes no text)"
    : "");
  card.append(el("div", wrote, { className: turn.final ? "wrote answer" : "wrote" }));
  return card;
}

function column(mode) {
  const col = el("section", null, { className: "mode-col", id: `transcript-${mode}` });
  col.append(el("h3", LABEL[mode] ?? mode));
  return col;
}

function summary(res) {
  const m = res.metrics ?? {};
  return `${m.prompt_tokens} prompt + ${m.generated_tokens} generated tokens, ${m.latent_steps} latent steps, ` +
    `${fmt((m.e2e_latency_s ?? 0) * 1000)} ms`;
}

export class Transcript {
  constructor(box) { this.box = box; this.live = null; }

  clear() { this.box.replaceChildren(); }

  // A column filling in as the loop's events come ("turn", "token").
  begin(mode, prompts, question) {
    $(`transcript-${mode}`)?.remove();
    const col = column(mode);
    this.box.append(col);
    this.live = { col, prompts, question, card: null };
  }

  event(ev) {
    const lv = this.live;
    if (!lv) return;
    if (ev.type === "turn") {
      lv.card = turnCard({ agent: ev.agent, round: ev.round, inputs: [] }, {}, lv.prompts, lv.question);
      lv.card.classList.add("working");
      lv.col.append(lv.card);
      lv.card.scrollIntoView?.({ block: "nearest" });
    } else if (ev.type === "token" && lv.card) {
      lv.card.querySelector(".wrote").textContent = ev.text;
    }
  }

  // The column redrawn from the mode's record ({answer, metrics, turns, handoffs}).
  finish(mode, res, prompts, question) {
    const col = column(mode);
    for (const t of res.turns ?? []) col.append(turnCard(t, res, prompts, question));
    col.append(el("div", summary(res), { className: "muted summary" }));
    const old = $(`transcript-${mode}`);
    if (old) old.replaceWith(col);
    else this.box.append(col);
    this.live = null;
  }

  // {mode: [turn text]}: what the page shows, for tests.
  read() {
    return Object.fromEntries([...this.box.querySelectorAll(".mode-col")].map((c) => [c.id.replace("transcript-", ""),
      [...c.querySelectorAll(".turn")].map((t) => [...t.children].map((x) => (x.tagName === "HEADER"
        ? [...x.children].map((y) => y.textContent).join(" · ") : x.textContent)).join("\n"))]));
  }
}
