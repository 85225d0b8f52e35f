// The globals runtime/model.js (tvmjs) and mas/prompt.js (tokenizers) read, set from the bundled packages.
import * as tvmjs from "@mlc-ai/web-runtime";
import * as tokenizers from "@mlc-ai/web-tokenizers";

globalThis.tvmjs ??= tvmjs;
globalThis.tokenizers ??= tokenizers;
