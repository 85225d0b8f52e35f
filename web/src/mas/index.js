// The RecursiveMAS playground modules: links (recursivelink.json + link math), prompts (chat templates, split at
// slots, tokenization), patterns, and the latent / text loops on WebGPU models. See web/harness/latent-check.html.
export { Link, LinkSet, loadLinks, parseLinks, erf, gelu, fromFloat16Bits } from "./links.js";
export { Pattern } from "./pattern.js";
export { TextCodec, splitPrompt, renderChat, pickChatTemplate, TEXT_FIELDS } from "./prompt.js";
export { Agent, Block, loadSystem, runLatent, runSingle, runText } from "./loop.js";
export { templateErrors, changedRoles, rolesDoc, parseRolesDoc, withRoles, ROLES_FORMAT } from "./roles.js";
