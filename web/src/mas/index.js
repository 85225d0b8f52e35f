// The RecursiveMAS playground modules: links (recursivelink.json + link math), prompts (chat templates, split at
// slots, tokenization), patterns, and the latent / text loops on WebGPU models. See web/harness/latent-check.html.
export { Link, LinkSet, loadLinks, parseLinks, erf, gelu, fromFloat16Bits } from "./links.js";
export { Pattern } from "./pattern.js";
export { TextCodec, splitPrompt, renderChat, pickChatTemplate, TEXT_FIELDS } from "./prompt.js";
export { Agent, Block, loadSystem, runLatent, runText } from "./loop.js";
