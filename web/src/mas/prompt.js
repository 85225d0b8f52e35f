// Chat-templated role prompts split into pieces: the JS side of train_links/agents.py (render, split_prompt).
//
// The chat template is rendered with @huggingface/jinja the way transformers' apply_chat_template does it (trim_blocks
// and lstrip_blocks, the variables messages / tools / documents / add_generation_prompt plus the tokenizer's named
// special tokens: bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token). Text is tokenized
// with @mlc-ai/web-tokenizers from the build's tokenizer.json; its encode() adds no special tokens, like
// `tokenizer(text, add_special_tokens=False)` on the Python side, and decode() skips special tokens here like
// `tokenizer.decode(ids, skip_special_tokens=True)`.
//
// Pages load @mlc-ai/web-tokenizers as a classic script (it sets globalThis.tokenizers) and map the bare specifier
// "@huggingface/jinja" with an import map to node_modules/@huggingface/jinja/dist/index.js.
import { Template } from "@huggingface/jinja";
import { fetchJSON } from "../runtime/fetching.js";
import { cachedFetchVerified } from "../runtime/cache.js";
import { MlcbuildError } from "../runtime/errors.js";

export const TEXT_FIELDS = ["question"]; // filled with tokenized text; every other marker is a latent slot
export const SPECIAL_TOKEN_ATTRIBUTES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
  "mask_token"];
const PROBE = "RESPONSE_PROBE";

function tokenizersGlobal() {
  const t = globalThis.tokenizers;
  if (!t?.Tokenizer) {
    throw new MlcbuildError("@mlc-ai/web-tokenizers is not loaded",
      "include node_modules/@mlc-ai/web-tokenizers/lib/index.js with a <script> tag first");
  }
  return t.Tokenizer;
}

const tokenText = (v) => (v === null || v === undefined ? null : typeof v === "string" ? v : v.content ?? null);

// Pick the template transformers would use: chat_template.jinja beats tokenizer_config.json's chat_template; a set
// of named templates uses "default".
export function pickChatTemplate({ jinjaFile = null, tokenizerConfig = {}, chatConfig = {} } = {}) {
  let t = jinjaFile ?? tokenizerConfig.chat_template ?? chatConfig.chat_template ?? null;
  if (Array.isArray(t)) t = Object.fromEntries(t.map((x) => [x.name, x.template]));
  if (t && typeof t === "object") {
    if (!("default" in t)) {
      throw new MlcbuildError(`the model has several chat templates (${Object.keys(t).sort().join(", ")}) and no ` +
        "default", "keep a default chat template in tokenizer_config.json");
    }
    t = t.default;
  }
  return t || null;
}

// A build's tokenizer and chat template.
export class TextCodec {
  // files: {tokenizerJSON: ArrayBuffer, tokenizerConfig?: object, chatTemplate?: string, specialTokensMap?: object,
  //         chatConfig?: object}
  static async fromFiles({ tokenizerJSON, tokenizerConfig = {}, jinjaFile = null, specialTokensMap = {},
    chatConfig = {} }, Tokenizer = null) {
    const Tok = Tokenizer ?? tokenizersGlobal();
    const tok = await Tok.fromJSON(tokenizerJSON);
    const spec = JSON.parse(new TextDecoder().decode(tokenizerJSON));
    return new TextCodec(tok, spec, tokenizerConfig, pickChatTemplate({ jinjaFile, tokenizerConfig, chatConfig }),
      specialTokensMap, chatConfig);
  }

  // The tokenizer files of a build folder (checked against its manifest.json).
  static async load(baseUrl, { manifest = null, chatConfig = null, Tokenizer = null } = {}) {
    const base = new URL(baseUrl, globalThis.location?.href);
    manifest = manifest ?? await fetchJSON(new URL("manifest.json", base));
    chatConfig = chatConfig ?? await fetchJSON(new URL("mlc-chat-config.json", base));
    const has = (n) => Boolean(manifest.files?.[n]);
    const bytes = (n) => cachedFetchVerified(base, manifest, n);  // Cache API, sha256-checked every load
    const json = async (n) => (has(n) ? JSON.parse(new TextDecoder().decode(await bytes(n))) : {});
    if (!has("tokenizer.json")) {
      throw new MlcbuildError(`${base} has no tokenizer.json`,
        "rebuild from a model with a Hugging Face fast tokenizer");
    }
    const tj = await bytes("tokenizer.json");
    return TextCodec.fromFiles({
      tokenizerJSON: tj.buffer.slice(tj.byteOffset, tj.byteOffset + tj.byteLength),
      tokenizerConfig: await json("tokenizer_config.json"),
      specialTokensMap: await json("special_tokens_map.json"),
      jinjaFile: has("chat_template.jinja") ? new TextDecoder().decode(await bytes("chat_template.jinja")) : null,
      chatConfig,
    }, Tokenizer);
  }

  constructor(tok, spec, tokenizerConfig, chatTemplate, specialTokensMap, chatConfig) {
    this.tok = tok;
    this.chatTemplate = chatTemplate;
    this.chatConfig = chatConfig;
    this.tokenizerConfig = tokenizerConfig;
    this.added = new Map((spec.added_tokens ?? []).map((a) => [a.content, a]));
    this.vocab = spec.model?.vocab ?? null;
    this.modelType = spec.model?.type ?? null;
    // the named special tokens transformers passes to the template (tokenizer_config.json, then special_tokens_map)
    this.specialTokens = {};
    for (const k of SPECIAL_TOKEN_ATTRIBUTES) {
      const v = tokenText(tokenizerConfig[k]) ?? tokenText(specialTokensMap[k]);
      if (v !== null) this.specialTokens[k] = v;
    }
    this.specialIds = new Set((spec.added_tokens ?? []).filter((a) => a.special).map((a) => a.id));
    for (const v of Object.values(this.specialTokens)) {
      const id = this.tokenToId(v);
      if (id !== null) this.specialIds.add(id);
    }
    this.template = null;
  }

  tokenToId(token) {
    if (this.added.has(token)) return this.added.get(token).id;
    if (this.vocab && !Array.isArray(this.vocab) && Object.hasOwn(this.vocab, token)) return this.vocab[token];
    if (Array.isArray(this.vocab)) {  // Unigram: [[piece, score], ...]
      const i = this.vocab.findIndex((p) => p[0] === token);
      return i >= 0 ? i : null;
    }
    return null;
  }

  get eosToken() { return this.specialTokens.eos_token ?? null; }
  get eosTokenId() { return this.eosToken === null ? null : this.tokenToId(this.eosToken); }

  encode(text) {
    return text ? Array.from(this.tok.encode(text)) : [];
  }

  decode(ids, { skipSpecialTokens = true } = {}) {
    const keep = skipSpecialTokens ? ids.filter((i) => !this.specialIds.has(i)) : ids;
    let text = keep.length ? this.tok.decode(Int32Array.from(keep)) : "";
    // transformers applies clean_up_tokenization only when asked, and never to BPE tokenizers by default
    const cfg = this.tokenizerConfig;
    if (cfg.clean_up_tokenization_spaces === true &&
        (this.modelType !== "BPE" || cfg.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output)) {
      text = text.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",")
        .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
        .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
    }
    return text;
  }

  // agents.render: the chat template, or a plain layout for models without one.
  render(messages, addGenerationPrompt) {
    if (this.chatTemplate) this.template ??= new Template(this.chatTemplate);
    return renderChat(this.template, this.specialTokens, messages, addGenerationPrompt);
  }
}

// apply_chat_template(messages, tokenize=False, add_generation_prompt=...) with a compiled Template (or a template
// string); without a template, the plain layout of agents.render.
export function renderChat(template, specialTokens, messages, addGenerationPrompt) {
  if (template) {
    const t = typeof template === "string" ? new Template(template) : template;
    return t.render({ ...specialTokens, messages, tools: null, documents: null,
      add_generation_prompt: addGenerationPrompt });
  }
  const text = messages.map((m) => `${m.role}: ${m.content}\n\n`).join("");
  return text + (addGenerationPrompt ? "assistant: " : "");
}

// Python's str.strip() (whitespace as str.isspace sees it, close enough to String.prototype.trim)
const strip = (s) => s.trim();

// split_prompt: the role's chat-templated prompt as pieces
//   {kind: "text", ids} | {kind: "field", name} | {kind: "slot", name}
// plus the text that closes an assistant turn.
export function splitPrompt(codec, role, name = "") {
  const msgs = [{ role: "system", content: role.system }, { role: "user", content: role.user }];
  const text = codec.render(msgs, true);
  const full = codec.render([...msgs, { role: "assistant", content: PROBE }], false);
  let tail;
  if (full.startsWith(text)) tail = full.slice(text.length);
  else {
    const i = full.indexOf(PROBE);
    tail = i >= 0 ? full.slice(i) : Array.from(full).slice(-1).join("");  // Python: full[-1:] when not found
  }
  const j = tail.indexOf(PROBE);
  const after = j >= 0 ? tail.slice(j + PROBE.length) : Array.from(tail).slice(PROBE.length - 1).join("");
  const turnEnd = strip(after) || (codec.eosToken ?? "");

  const pieces = [];
  let pos = 0;
  for (const m of text.matchAll(/\{([\p{L}\p{N}_]+)\}/gu)) {  // Python's r"\{(\w+)\}"
    const marker = m[1];
    if (!TEXT_FIELDS.includes(marker) && !role.slots.includes(marker)) continue;  // a literal brace, not a marker
    pieces.push({ kind: "text", ids: codec.encode(text.slice(pos, m.index)) });
    pieces.push({ kind: TEXT_FIELDS.includes(marker) ? "field" : "slot", name: marker });
    pos = m.index + m[0].length;
  }
  pieces.push({ kind: "text", ids: codec.encode(text.slice(pos)) });
  const have = new Set(pieces.filter((p) => p.kind === "slot").map((p) => p.name));
  const missing = role.slots.filter((s) => !have.has(s)).sort();
  if (missing.length) {
    throw new MlcbuildError(`agent ${name || role.name}: the chat template dropped slot(s) ${JSON.stringify(missing)}`,
      "use a model whose chat template keeps the system and user text");
  }
  return { pieces, turnEnd, text };
}
