// The typed errors of web/src/runtime/errors.js as messages a person can act on, and the boxes that show them.
import { $, el } from "./dom.js";

export function explain(e) {
  const name = e?.name ?? "Error";
  const msg = String(e?.message ?? e);
  const raw = `${name}: ${msg}`;
  switch (name) {
    case "NoGPUAdapterError":
      return { title: "WebGPU is present, but the browser found no GPU adapter to run it on.", detail: msg,
        fix: e.fix || "Turn on hardware acceleration and update the GPU driver; see chrome://gpu." };
    case "WebGPUUnavailableError":
      return { title: "WebGPU is not available in this browser.", detail: msg,
        fix: e.fix || "Use a recent Chrome or Edge (or Chromium with --enable-unsafe-webgpu), over https or " +
          "http://localhost." };
    case "ShaderF16UnsupportedError":
      return { title: "This build needs 16-bit float shaders (shader-f16), which this GPU does not offer.", detail: msg,
        fix: "Pick the f32 variant of the build (e.g. q4f32_1 instead of q4f16_1): mlcbuild make MODEL --quant q4f32_1." };
    case "DeviceLimitError":
      return { title: "A buffer is larger than this GPU allows (device limits).", detail: msg,
        fix: "Use a smaller model or a 4-bit quantization (q4f32_1), or a GPU with a larger maxStorageBufferBindingSize." };
    case "ArtifactMissingError":
      return { title: "A build artifact is missing or cannot be fetched.", detail: msg,
        fix: "Check the build / links URLs, that `mlcbuild serve DIR` serves the right folder, or rebuild with mlcbuild make." };
    case "ChecksumMismatchError":
      return { title: "A downloaded file does not match its sha256 in manifest.json.", detail: msg,
        fix: "The file is damaged or was tampered with: rebuild, re-download, or clear the cache (button below)." };
    case "LinkMismatchError":
      return { title: "The links file does not fit these models (other agents or hidden sizes).", detail: msg,
        fix: "Use the recursivelink.json trained for exactly these builds, one build per pattern role." };
    case "LinkFormatError":
      return { title: "The links file is not a valid recursivelink.json.", detail: msg,
        fix: "Re-train or re-export it with mlcbuild train-links." };
    case "PeerError":
      return { title: "The run across machines stopped.", detail: msg,
        fix: e.fix || "Check the other machine's page or mlcbuild serve, then connect again under Across machines." };
    case "HandoffFrameError":
      return { title: "A hand-off from the other machine was refused before it reached a model.", detail: msg,
        fix: e.fix || "Both sides must load the same links file, the builds it was trained for, and the same m." };
    case "PromptTemplateError":
      return { title: "A role's prompt template cannot run.", detail: msg,
        fix: e.fix || "Fix the template marked in red under Prompts, or press Reset to trained prompts." };
    default:
      if (e?.fix) return { title: "This cannot run as set up.", detail: msg, fix: e.fix };
      if (/maxStorageBufferBindingSize|maxBufferSize|exceeds the max|device limit/i.test(msg)) {
        return { title: "A buffer is larger than this GPU allows (device limits).", detail: raw,
          fix: "Use a smaller model or quantization, or a shorter context." };
      }
      if (/device (was )?lost/i.test(msg)) {
        return { title: "The GPU device was lost.", detail: raw, fix: "Reload the page; close other GPU-heavy tabs." };
      }
      return { title: "Something went wrong.", detail: raw, fix: "" };
  }
}

// #error: the message, what it means, how to fix it; returns explain(e).
export function showError(e) {
  const x = explain(e);
  const box = $("error");
  box.replaceChildren(el("strong", x.title), el("div", x.detail), x.fix ? el("div", `How to fix: ${x.fix}`) : "");
  box.classList.add("show");
  box.scrollIntoView?.({ block: "nearest" });
  console.error(e);
  return x;
}

export function showNote(text) { $("notes").append(el("div", text)); }

export function clearError() { $("error").classList.remove("show"); $("error").replaceChildren(); }
