// The production bundle's entry (web/tools/bundle.mjs builds it). The dev page loads tvmjs and the tokenizers as
// classic scripts that set globals; bundled, they are CommonJS modules, so vendor.js sets the same globals first
// (imports run in order) and the app's modules stay the same in both modes.
import "./vendor.js";
import "../app/main.js";
