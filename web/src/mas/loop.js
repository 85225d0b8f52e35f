// The RecursiveMAS loop in the browser: the JS side of builder/run/latent.py (LatentMAS.run), on the WebGPU libraries.
//
// Every model call goes through web/src/runtime/model.js: prompts are embedded with `embed`, an agent prefills its
// prompt with `get_last_hidden` (hidden) and runs m latent thoughts with `decode_last_hidden` (decodeHidden) fed
// with its inner link's output (no LM head, no sampling). The [m, d] block goes through the outer link of each edge
// into the next agent's slot; only the final agent of the final round decodes text (greedy, stops at the turn-end
// or eos ids). The text-MAS baseline runs the same agents, prompts and rounds, passing decoded text instead.
// Agents that share a build folder share one Model (one copy of the weights on the GPU); each agent has its own
// Sequence (KV cache). Between rounds an agent keeps the KV entries of its prompt prefix (everything before the
// first slot, the same in every round of one question) and prefills only the rest, as on the Python side.
import { Model, argmax, concat } from "../runtime/model.js";
import { fetchJSON } from "../runtime/fetching.js";
import { LinkMismatchError } from "../runtime/errors.js";
import { loadLinks } from "./links.js";
import { TextCodec, splitPrompt } from "./prompt.js";
import { frameSize } from "./wire.js";

const now = () => performance.now();
// The text baseline's cap per message: agents write until their turn ends, as a text MAS does (builder/run/latent.py).
export const TEXT_TOKENS = 256;

// A latent block: `rows` vectors of size `dim`, row-major.
export class Block {
  constructor(data, rows, dim) {
    if (data.length !== rows * dim) throw new Error(`block of ${data.length} values is not ${rows} x ${dim}`);
    Object.assign(this, { data, rows, dim });
  }

  static concat(a, b) { return new Block(concat([a.data, b.data]), a.rows + b.rows, a.dim); }

  toArray() {
    const row = (i) => Array.from(this.data.subarray(i * this.dim, (i + 1) * this.dim));
    return Array.from({ length: this.rows }, (_, i) => row(i));
  }
}

// One role on one loaded model: prompt pieces from the build's tokenizer and chat template.
export class Agent {
  constructor(name, role, model, codec) {
    Object.assign(this, { name, model, codec });
    this.seq = model.sequence(); // this agent's own KV cache, kept across rounds
    this.setRole(role);
  }

  // (Re)split the prompt for a role's templates: the playground's role editor changes them between runs.
  setRole(role) {
    const { codec, model } = this;
    const { pieces, turnEnd } = splitPrompt(codec, role, this.name);
    Object.assign(this, { role, pieces, turnEnd });
    const end = turnEnd ? codec.encode(turnEnd).slice(0, 1) : [];
    const eos = model.chatConfig.eos_token_id;
    this.stop = new Set([...end, ...(Array.isArray(eos) ? eos : eos === null || eos === undefined ? [] : [eos])]);
    if (codec.eosTokenId !== null) this.stop.add(codec.eosTokenId);
    this.textEmbeds = new Map(); // piece index -> embeddings of a constant text piece (computed once)
    this.cachedQuestion = null; // the question whose prompt prefix `seq` holds (a new prompt: none)
  }

  get d() { return this.model.hiddenSize; }

  encode(text) { return this.codec.encode(text); }

  // [L, d] prompt embeddings with latent blocks (or re-tokenized text) at their slots; block.prefix is the number
  // of rows before the first slot (the part of the prompt that every round of one question shares).
  async prompt(question, slots) {
    const parts = [];
    let prefix = null;
    for (let i = 0; i < this.pieces.length; i++) {
      const p = this.pieces[i];
      let ids;
      if (p.kind === "slot" && prefix === null) prefix = parts.reduce((a, x) => a + x.length, 0) / this.d;
      if (p.kind === "text") {
        if (!p.ids.length) continue;
        if (!this.textEmbeds.has(i)) this.textEmbeds.set(i, await this.model.embed(p.ids));
        parts.push(this.textEmbeds.get(i));
        continue;
      } else if (p.kind === "field") {
        ids = this.encode(question);
      } else {
        const v = slots[p.name];
        if (v === undefined || v === null) continue;
        if (v instanceof Block) {
          if (v.dim !== this.d) {
            throw new LinkMismatchError(`slot ${p.name} of ${this.name}: block of dim ${v.dim}, model has ${this.d}`);
          }
          parts.push(v.data);
          continue;
        }
        ids = this.encode(v);
      }
      if (ids.length) parts.push(await this.model.embed(ids));
    }
    const data = concat(parts);
    const block = new Block(data, data.length / this.d, this.d);
    block.prefix = Math.min(prefix === null ? block.rows : prefix, block.rows - 1);
    return block;
  }

  // Point the sequence at the end of this prompt's shared prefix; returns the rows still to prefill.
  start(question, emb, reuse) {
    const H = this.d;
    if (reuse && this.cachedQuestion === question && this.seq.length >= emb.prefix) {
      this.seq.truncate(emb.prefix);
      return new Block(emb.data.subarray(emb.prefix * H), emb.rows - emb.prefix, H);
    }
    this.seq.reset();
    this.cachedQuestion = question;
    return emb;
  }
}

class Metrics {
  constructor() {
    this.prompt_tokens = 0; // positions prefilled (text tokens and spliced latent rows)
    this.reused_tokens = 0; // prompt positions whose KV entries were kept from the agent's previous round
    this.generated_tokens = 0; // decoded text tokens
    this.latent_steps = 0; // decode_last_hidden steps
    this.stages = []; // per agent per round: {agent, round, stage, ms, ...}
    this.e2e_ms = 0;
    this.handoff_bytes = 0; // what the hand-offs would weigh between machines: frames, or the text messages' UTF-8
  }

  stage(agent, round, stage, t0, extra) {
    this.stages.push({ agent, round, stage, ms: now() - t0, ...extra });
  }

  toJSON() {
    const sum = (s) => this.stages.filter((x) => x.stage === s).reduce((a, x) => a + x.ms, 0);
    const prefillMs = sum("prefill");
    const decodeMs = sum("decode");
    return {
      prompt_tokens: this.prompt_tokens, reused_tokens: this.reused_tokens, generated_tokens: this.generated_tokens,
      completion_tokens: this.generated_tokens, total_tokens: this.prompt_tokens + this.generated_tokens,
      latent_steps: this.latent_steps, e2e_latency_s: this.e2e_ms / 1000, handoff_bytes: this.handoff_bytes,
      prefill_tokens_per_s: prefillMs ? this.prompt_tokens / (prefillMs / 1000) : null,
      decode_tokens_per_s: decodeMs ? this.generated_tokens / (decodeMs / 1000) : null,
      latent_steps_per_s: sum("latent") ? this.latent_steps / (sum("latent") / 1000) : null,
      stages: this.stages,
    };
  }
}

function feed(agent, question, emb, reuse, mt) {
  const rows = agent.start(question, emb, reuse);
  mt.prompt_tokens += rows.rows;
  mt.reused_tokens += emb.rows - rows.rows;
  return rows;
}

async function prefillHidden(agent, question, emb, reuse, mt, round) {
  const t0 = now();
  const rows = feed(agent, question, emb, reuse, mt);
  const h = await agent.seq.hidden(rows.data);
  mt.stage(agent.name, round, "prefill", t0, { tokens: rows.rows, reused: emb.rows - rows.rows });
  return h.subarray((rows.rows - 1) * agent.d);
}

// onToken(text so far) after each generated token: the playground streams answers and messages as they come.
async function decodeText(agent, question, emb, reuse, maxNew, mt, round, onPrefilled = () => {}, onToken = null) {
  const seq = agent.seq;
  let t0 = now();
  const rows = feed(agent, question, emb, reuse, mt);
  let logits = await seq.prefill(rows.data);
  mt.stage(agent.name, round, "prefill", t0, { tokens: rows.rows, reused: emb.rows - rows.rows });
  onPrefilled();
  t0 = now();
  const ids = [];
  for (let i = 0; i < maxNew; i++) {
    const next = argmax(logits);
    if (agent.stop.has(next)) break;
    ids.push(next);
    if (onToken) onToken(agent.codec.decode(ids));
    logits = await seq.decode(await agent.model.embed([next]));
  }
  mt.generated_tokens += ids.length;
  const text = agent.codec.decode(ids);
  mt.stage(agent.name, round, "decode", t0, { tokens: ids.length });
  return { text, ids };
}

async function run(mode, agents, links, pattern, question, opts = {}) {
  const maxNewTokens = opts.maxNewTokens ?? 32;
  const reuse = opts.reuseKV ?? true;
  if (mode === "single") { // the final agent alone, its slots left empty: the one-agent baseline
    const mt = new Metrics();
    const agent = agents[pattern.final];
    agent.cachedQuestion = null;
    const tStart = now();
    const emb = await agent.prompt(question, {});
    const emit = opts.onEvent ?? (() => {});
    emit({ type: "turn", agent: agent.name, round: 0 });
    const { text, ids } = await decodeText(agent, question, emb, reuse, maxNewTokens, mt, 0, () => {},
      opts.onEvent ? (t) => emit({ type: "token", agent: agent.name, round: 0, text: t }) : null);
    mt.e2e_ms = now() - tStart;
    return { mode, answer: text, answer_ids: ids, metrics: mt.toJSON(), handoffs: [],
      turns: [{ agent: agent.name, round: 0, inputs: [], text, final: true }] };
  }
  const rounds = opts.rounds || links?.rounds;
  const m = opts.m || links?.m;
  if (!rounds || !m) throw new Error("rounds and m are needed (from the links file or the options)");
  if (mode === "latent" && !links) throw new Error("latent mode needs the links");
  // opts.peer (peer.js): the roles in peer.remote run on another machine; their hand-offs to this side's roles
  // come as checked frames, and this side's to theirs go out as frames (after the outer link)
  const peer = opts.peer ?? null;
  const remote = peer ? peer.remote : new Set();
  if (peer && mode !== "latent") throw new Error(`a run split between machines is latent only, not ${mode}`);
  peer?.begin(rounds, m);
  const mt = new Metrics();
  for (const a of Object.values(agents)) a.cachedQuestion = null; // every run starts cold: latent vs text is fair
  // opts.onEvent sees the loop as it goes (the playground's diagram and transcript): {type: "round", round, rounds};
  // "turn" when an agent starts; "send" when a source's block (or message) for an edge is ready; "land" once the
  // destination has prefilled it; "token" with the text so far while an agent writes
  const emit = opts.onEvent ?? (() => {});
  const handoffs = [];
  const turns = []; // per agent per round: {agent, round, inputs: [{edge, slot, src}], text (what it wrote), final}
  const tStart = now();
  let prev = {};
  let answer = null;
  let answerIds = null;
  for (let r = 0; r < rounds; r++) {
    emit({ type: "round", round: r, rounds });
    const cur = {};
    for (const name of pattern.order()) {
      if (remote.has(name)) continue;
      const agent = agents[name];
      emit({ type: "turn", agent: name, round: r });
      const turn = { agent: name, round: r, inputs: [], text: null, final: false };
      turns.push(turn);
      // streaming decodes the text so far at every token: only when someone listens
      const streamed = opts.onEvent ? (t) => emit({ type: "token", agent: name, round: r, text: t }) : null;
      const slots = {};
      const landing = [];
      const landed = () => { for (const edge of landing) emit({ type: "land", edge, round: r }); };
      for (const e of pattern.incoming(name)) {
        const far = remote.has(e.src);
        let src = e.next_round ? prev[e.src] : cur[e.src];
        if (far && !(e.next_round && r === 0)) {
          const f = await peer.receive(e, r);
          src = new Block(f.data, f.rows, f.dim);
        }
        if (src === undefined || src === null) continue;
        landing.push(e.key);
        turn.inputs.push({ edge: e.key, slot: e.slot, src: e.src, ...(typeof src === "string" ? { text: src } : {}),
          ...(far ? { remote: true } : {}) });
        let val = src;
        if (far) {
          handoffs.push({ edge: e.key, round: r, block: val, remote: true });
        } else if (mode === "latent") {
          const link = links.get(e.key);
          val = new Block(link.forward(src.data, src.rows), src.rows, link.dTgt);
          handoffs.push({ edge: e.key, round: r, block: val });
        }
        const old = slots[e.slot];
        slots[e.slot] = old === undefined ? val : typeof val === "string" ? `${old}\n${val}` : Block.concat(old, val);
      }
      const emb = await agent.prompt(question, slots);
      if (r === rounds - 1 && name === pattern.final) {
        ({ text: answer, ids: answerIds } = await decodeText(agent, question, emb, reuse, maxNewTokens, mt, r,
          landed, streamed));
        Object.assign(turn, { text: answer, final: true });
        break;
      }
      if (mode === "latent") {
        let h = await prefillHidden(agent, question, emb, reuse, mt, r);
        landed();
        const inner = links.inner(name);
        const t0 = now();
        const block = [];
        for (let i = 0; i < m; i++) {
          h = await agent.seq.decodeHidden(inner.forward(h, 1));
          block.push(h);
        }
        mt.latent_steps += m;
        mt.stage(name, r, "latent", t0, { steps: m });
        cur[name] = new Block(concat(block), m, agent.d);
        for (const e of pattern.edges) { // this side's hand-offs to the other machine's roles
          if (e.src === name && remote.has(e.dst) && (!e.next_round || r + 1 < rounds)) {
            const link = links.get(e.key);
            peer.send(e, e.next_round ? r + 1 : r, new Block(link.forward(cur[name].data, m), m, link.dTgt));
          }
        }
      } else {
        cur[name] = (await decodeText(agent, question, emb, reuse, opts.textTokens || TEXT_TOKENS, mt, r,
          landed, streamed)).text;
        turn.text = cur[name];
      }
      // only edges someone will read: a next-round edge out of the last round carries nothing
      for (const e of pattern.edges) {
        if (e.src === name && (!e.next_round || r + 1 < rounds)) {
          emit({ type: "send", edge: e.key, round: e.next_round ? r + 1 : r });
        }
      }
    }
    prev = cur;
  }
  if (peer && remote.has(pattern.final)) {
    answer = (await peer.expect("answer", pattern.final)).text;
    turns.push({ agent: pattern.final, round: rounds - 1, inputs: [], text: answer, final: true, remote: true });
  } else if (peer) {
    peer.sendJSON({ type: "answer", text: answer });
  }
  mt.e2e_ms = now() - tStart;
  const utf8 = (t) => new TextEncoder().encode(t).length;
  mt.handoff_bytes = mode === "latent"
    ? handoffs.reduce((a, h) => a + frameSize(h.edge, h.block.rows, h.block.dim, peer?.dtype ?? "f32"), 0)
    : turns.reduce((a, t) => a + t.inputs.reduce((b, x) => b + (x.text ? utf8(x.text) : 0), 0), 0);
  return { mode, answer, answer_ids: answerIds, metrics: mt.toJSON(), handoffs, turns,
    ...(peer ? { wire: peer.summary() } : {}) };
}

// Latent hand-offs; opts: {rounds, m, maxNewTokens, reuseKV, onEvent} (rounds and m default to the links file's).
export function runLatent(agents, links, pattern, question, opts = {}) {
  return run("latent", agents, links, pattern, question, opts);
}

// The text-MAS baseline: each non-final agent writes its message until its turn ends, at most opts.textTokens
// (default TEXT_TOKENS) tokens.
export function runText(agents, links, pattern, question, opts = {}) {
  return run("text", agents, links, pattern, question, opts);
}

// The single-agent baseline: the final agent alone, its slots empty (as builder/run/latent.py's "single" mode).
export function runSingle(agents, links, pattern, question, opts = {}) {
  return run("single", agents, links, pattern, question, opts);
}

// Load a system: one build folder URL per pattern agent (in the links file's agent order) and recursivelink.json
// (its URL, or a LinkSet already loaded by loadLinks). Dims are checked against each build's mlc-chat-config.json
// before any weights load, and against the loaded model.
export async function loadSystem(buildUrls, linksOrUrl, { onProgress = () => {}, maxSeqLen = 1024 } = {}) {
  const base = globalThis.location?.href;
  const urls = buildUrls.map((u) => (u ? new URL(u, base).href : null)); // null: a role another machine runs
  const links = typeof linksOrUrl === "string" ? await loadLinks(new URL(linksOrUrl, base).href) : linksOrUrl;
  const pattern = links.pattern;
  if (urls.length !== pattern.agents.length) {
    throw new LinkMismatchError(`${links.source}: pattern ${pattern.name} has agents ` +
      `${JSON.stringify(pattern.agents)}, got ${urls.length} build folder(s)`,
    "pass one build folder per agent, in order");
  }
  const configs = {};
  const here = pattern.agents.map((n, i) => [n, urls[i]]).filter(([, u]) => u);
  const uniq = new Set(here.map(([, u]) => u));
  for (const u of uniq) configs[u] = await fetchJSON(new URL("mlc-chat-config.json", u));
  const dimOf = (u) => configs[u].hidden_size ?? configs[u].model_config?.hidden_size;
  links.checkDims(Object.fromEntries(here.map(([n, u]) => [n, dimOf(u)])));
  const models = {};
  const codecs = {};
  for (const u of uniq) {
    onProgress({ stage: "model", url: u });
    models[u] = await Model.load(u, { maxSeqLen, onProgress: (p) => onProgress({ ...p, url: u }) });
    codecs[u] = await TextCodec.load(u, { manifest: models[u].manifest, chatConfig: models[u].chatConfig });
  }
  links.checkDims(Object.fromEntries(here.map(([n, u]) => [n, models[u].hiddenSize])));
  const agents = {};
  for (const [n, u] of here) agents[n] = new Agent(n, pattern.role(n), models[u], codecs[u]);
  return { agents, links, pattern, models: Object.values(models) };
}
