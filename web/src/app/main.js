// The playground page (web/index.html): pick a links file (its pattern) and a build per role, run the RecursiveMAS
// loop latent / text / both, draw the pattern as it runs (diagram.js), show agent status, latent hand-offs (with a
// nearest-token peek), the answers and a latent-vs-text table.
// Artifacts come from a base URL (?artifacts=, artifacts.js) that may be another origin; build and links URLs are
// relative to it. URL params (?auto=1&builds=..&links=..&r=..&m=..&max=..&q=..&mode=both) run without clicks and
// publish window.__mlcbuildResult (or window.__mlcbuildError plus a result carrying the #error text) for tests; the
// buttons publish the same way, ?auto=load only loads (and caches) the models, and ?click=<button id> (without auto)
// presses one after the page is set up; ?pick=<links URL> chooses that links file in the pattern picker instead.
import { loadSystem, runLatent, runText } from "../mas/loop.js";
import { loadLinks } from "../mas/links.js";
import { fetchJSON } from "../runtime/fetching.js";
import { LinkMismatchError } from "../runtime/errors.js";
import { detectGPU } from "../runtime/model.js";
import { clearArtifactCache } from "../runtime/cache.js";
import { explain } from "./messages.js";
import { $, el } from "./dom.js";
import { readTable, showAnswer, showHandoffs, showTable } from "./results.js";
import { artifactsBase, defaultLinks, describe, guessBuild, linksLabel, loadIndex } from "./artifacts.js";
import { Diagram } from "./diagram.js";

const q = new URLSearchParams(location.search);
const base = artifactsBase(q);
const at = (u) => new URL(u, base).href; // a typed or preset build / links URL, relative to the artifacts base
let index = { builds: [], links: [] };
let pattern = null; // {agents: [...], links file meta}
let system = null; // loaded system, keyed by systemKey
let systemKey = null;
let busy = false;
const diagram = new Diagram($("diagram"));

function showError(e) {
  const x = explain(e);
  const box = $("error");
  box.replaceChildren(el("strong", x.title), el("div", x.detail), x.fix ? el("div", `How to fix: ${x.fix}`) : "");
  box.classList.add("show");
  console.error(e);
  return x;
}

function showNote(text) { $("notes").append(el("div", text)); }

function clearError() { $("error").classList.remove("show"); $("error").replaceChildren(); }

function progress(fraction, text) {
  if (fraction !== null && fraction !== undefined) $("progress").value = fraction;
  $("progress-text").textContent = text;
}

// ---------------------------------------------------------------------------------------------------------------
// artifacts and roles

async function showIndex() {
  $("artifacts").value = base;
  index = await loadIndex(base);
  $("dist-root").textContent = index.source ?? base;
  if (index.error) showNote(index.error);
  $("builds").textContent = index.builds.length ? index.builds.map(describe).join(", ") : "(none: type URLs)";
  const dl = el("datalist", null, { id: "build-list" });
  for (const b of index.builds) dl.append(el("option", null, { value: b.url, label: `${b.model} ${b.quantization}` }));
  document.body.append(dl);
  const labels = index.links.map(linksLabel);
  const pick = $("links-pick");
  pick.replaceChildren(el("option", index.links.length ? "(the URL below)" : "(none listed: type a URL below)",
    { value: "" }));
  index.links.forEach((l, i) => {
    // two files with the same pattern and agents: tell them apart by file
    const twin = labels.filter((x) => x === labels[i]).length > 1;
    pick.append(el("option", twin ? `${labels[i]}: ${l.file ?? l.url}` : labels[i], { value: l.url }));
  });
}

// The picker shows the links file in the URL field when the index lists it.
function syncPicker(url) {
  const pick = $("links-pick");
  pick.value = [...pick.options].some((o) => o.value === url) ? url : "";
}

async function loadPattern(preset = []) {
  const url = $("links-url").value.trim();
  if (!url) throw new Error("no recursivelink.json URL: type one in the links field");
  const ls = await loadLinks(at(url));
  pattern = { agents: ls.pattern.agents, rounds: ls.rounds, m: ls.m, name: ls.pattern.name, url, links: ls };
  syncPicker(at(url));
  // r and m follow the links file unless the user (or the URL) set them
  for (const [id, key] of [["rounds", "rounds"], ["m", "m"]]) {
    if ($(id).value && !$(id).dataset.fromLinks) continue;
    $(id).value = ls[key];
    $(id).dataset.fromLinks = "1";
  }
  const box = $("roles");
  box.replaceChildren(el("div", `pattern ${ls.pattern.name}: assign a build to each role`));
  const roles = {};
  ls.pattern.agents.forEach((name, i) => {
    const guess = preset[i] ?? guessBuild(index, at(url), name, ls.agents[name]);
    roles[name] = { build: guess, d: ls.agents[name].hidden_size };
    const input = el("input", null, { id: `role-${name}`, value: guess });
    input.setAttribute("list", "build-list");
    input.addEventListener("input", () => diagram.setBuild(name, input.value));
    const lab = el("label", `${name} (d=${ls.agents[name].hidden_size}) `);
    lab.append(input);
    box.append(el("div"), lab);
  });
  const tb = $("agents").tBodies[0];
  tb.replaceChildren();
  for (const name of ls.pattern.agents) {
    const tr = el("tr", null, { id: `agent-${name}` });
    tr.append(el("td", name), el("td", ""), el("td", "idle"));
    tb.append(tr);
  }
  diagram.draw(ls.pattern, roles);
}

// What the page shows for the loaded pattern (published after Load pattern or a pick, for tests).
function patternState() {
  return { pattern: pattern.name, links: at(pattern.url), picked: $("links-pick").value,
    roles: Object.fromEntries(pattern.agents.map((n) => [n, $(`role-${n}`).value])),
    agents: Array.from($("agents").tBodies[0].rows, (tr) => tr.cells[0].textContent), diagram: diagram.read(),
    choices: Array.from($("links-pick").options, (o) => o.textContent), rounds: $("rounds").value, m: $("m").value };
}

function setStatus(name, status, build) {
  const tr = $(`agent-${name}`);
  if (!tr) return;
  if (build !== undefined) tr.cells[1].textContent = build;
  tr.cells[2].textContent = status;
  diagram.setStatus(name, status);
}

// Report what each agent is doing as it calls its own sequence (KV cache) on the shared model.
function instrument(agents) {
  const STAGE = { hidden: "prefill", prefill: "prefill", decodeHidden: "latent", decode: "decoding" };
  let current = null;
  for (const [name, a] of Object.entries(agents)) {
    const seq = a.seq.__target ?? a.seq;
    a.seq = new Proxy(seq, {
      get(t, k) {
        if (k === "__target") return t;
        const v = t[k];
        if (typeof v !== "function") return v;
        return (...args) => {
          if (STAGE[k]) {
            if (current && current !== name) setStatus(current, "done");
            current = name;
            setStatus(name, STAGE[k]);
          }
          return v.apply(t, args);
        };
      },
    });
  }
  return () => { for (const n of Object.keys(agents)) setStatus(n, "done"); current = null; };
}

// ---------------------------------------------------------------------------------------------------------------
// runs

function readOpts() {
  const num = (id) => (($(id).value || "").trim() ? Number($(id).value) : undefined);
  return { rounds: num("rounds"), m: num("m"), maxNewTokens: num("max-tokens") ?? 32, textTokens: num("text-tokens") };
}

async function ensureSystem() {
  // the page runs the pattern it shows: a links URL typed since the last load is loaded (and drawn) first
  if (!pattern || pattern.url !== $("links-url").value.trim()) await loadPattern();
  await detectGPU(); // before any download: without WebGPU nothing below can run
  const typed = pattern.agents.map((n) => $(`role-${n}`).value.trim());
  const missing = pattern.agents.filter((n, i) => !typed[i]);
  if (missing.length) throw new Error(`no build assigned to ${missing.join(", ")}`);
  const urls = typed.map(at);
  const linksUrl = $("links-url").value.trim();
  const key = JSON.stringify([urls, linksUrl]);
  if (system && systemKey === key) return system;
  const t0 = performance.now();
  pattern.agents.forEach((n, i) => setStatus(n, "loading", urls[i]));
  const unique = [...new Set(urls)];
  const nModels = unique.length;
  // Cheap checks first (links vs the builds' dims), then Model.load checks every weight shard's sha256 against
  // manifest.json (cache.js fills tvmjs' Cache API scope with verified bytes only) and loads from that cache.
  const links = pattern.links; // read when the pattern was set up (37 MB for SmolLM2's three agents: read it once)
  if (urls.length !== links.pattern.agents.length) {
    throw new LinkMismatchError(`pattern ${links.pattern.name} has ${links.pattern.agents.length} agents, got ` +
      `${urls.length} build(s)`, "pass one build folder per agent, in order");
  }
  const dims = {};
  const weights = {};
  const meta = {};  // one config and manifest fetch per distinct build, however many roles share it
  for (const [i, n] of links.pattern.agents.entries()) {
    const build = new URL(urls[i]);
    // in this order, so a missing build is reported by its config file first
    meta[build.href] ??= [await fetchJSON(new URL("mlc-chat-config.json", build)),
      await fetchJSON(new URL("manifest.json", build))];
    const [cfg, manifest] = meta[build.href];
    dims[n] = cfg.hidden_size ?? cfg.model_config?.hidden_size;
    weights[n] = { sha256: manifest.source?.sha256, where: urls[i] };
  }
  links.checkDims(dims);
  for (const w of links.checkWeights(weights, { force: q.get("force_links") === "1" })) {
    console.warn(w);
    showNote(`warning: ${w}`);
  }
  let done = 0;
  system = await loadSystem(urls, links, {
    onProgress: (p) => {
      if (p.stage === "ready") done += 1;
      const f = (done + (p.stage === "weights" ? p.fraction ?? 0 : 0)) / nModels;
      const what = p.stage === "verify" ? "verifying" : "loading";
      progress(Math.min(f, 1), `${what} ${p.url ?? ""}: ${p.stage}${p.text ? ` (${p.text})` : ""}`);
    },
  });
  system.loadMs = performance.now() - t0;
  system.verified = Object.fromEntries(unique.map((u) => [u, system.models.find((m) => m.baseUrl === u)?.verified]));
  for (const [u, v] of Object.entries(system.verified)) {
    if (v?.rebuilt) showNote(`${u} was rebuilt since your last visit: its cached files were dropped and fetched again`);
  }
  systemKey = key;
  system.finish = instrument(system.agents);
  pattern.agents.forEach((n) => setStatus(n, "ready"));
  progress(1, `loaded ${nModels} model(s) in ${(system.loadMs / 1000).toFixed(1)} s`);
  return system;
}

async function run(modes) {
  if (busy) return null;
  busy = true;
  clearError();
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  const results = {};
  try {
    const sys = await ensureSystem();
    const opts = readOpts();
    const question = $("question").value;
    $("answers").replaceChildren();
    const drawn = {}; // the diagram as each mode left it
    for (const mode of modes) {
      progress(null, `running ${mode}...`);
      diagram.begin(mode);
      for (const n of Object.keys(sys.agents)) setStatus(n, "waiting");
      const res = await (mode === "latent" ? runLatent : runText)(sys.agents, sys.links, sys.pattern, question,
        { ...opts, onEvent: (ev) => diagram.event(ev) });
      sys.finish();
      diagram.end();
      drawn[mode] = diagram.read();
      results[mode] = res;
      showAnswer(mode, res.answer);
      showTable(results);
    }
    progress(1, "done");
    const out = { load_ms: sys.loadMs, pattern: sys.pattern.name, modes, verified: sys.verified,
      load_times: sys.models.map((m) => m.loadTimes) };
    for (const [mode, res] of Object.entries(results)) {
      out[mode] = { answer: res.answer, answer_ids: res.answer_ids,
        metrics: Object.fromEntries(Object.entries(res.metrics).filter(([k]) => k !== "stages")),
        diagram: drawn[mode] };
    }
    if (results.latent) {
      progress(null, "peeking at the hand-offs...");
      out.latent.handoffs = await showHandoffs(sys, results.latent);
      progress(1, "done");
    }
    out.table = readTable();
    out.answers = Object.fromEntries(modes.map((m) => [m, $(`answer-${m}`).textContent]));
    return out;
  } catch (e) {
    diagram.end("failed");
    throw e;
  } finally {
    busy = false;
    for (const b of document.querySelectorAll("button")) b.disabled = false;
  }
}

function bind() {
  const guard = (f) => async () => {
    try {
      const r = await f();
      if (r) window.__mlcbuildResult = r;
    } catch (e) {
      publishError(e);
    }
  };
  const reload = async () => {
    system = null;
    await loadPattern();
    return patternState();
  };
  $("load-links").onclick = guard(reload);
  for (const id of ["rounds", "m"]) $(id).addEventListener("input", () => delete $(id).dataset.fromLinks);
  $("links-pick").onchange = guard(async () => {
    if (!$("links-pick").value) return null; // "(the URL below)": nothing to change
    $("links-url").value = $("links-pick").value;
    return reload();
  });
  $("run-latent").onclick = guard(() => run(["latent"]));
  $("run-text").onclick = guard(() => run(["text"]));
  $("run-both").onclick = guard(() => run(["latent", "text"]));
  $("clear-cache").onclick = guard(async () => {
    const n = await clearArtifactCache();
    system = null;
    progress(null, `cache cleared (${n} cache(s))`);
  });
}

async function main() {
  bind();
  // no WebGPU (or no adapter): say what to do at once; the builds and links still load, nothing is downloaded
  const gpuError = await detectGPU().then(() => null, (e) => e);
  if (gpuError) showError(gpuError);
  await showIndex();
  if (q.get("q")) $("question").value = q.get("q");
  for (const [p, id] of [["r", "rounds"], ["m", "m"], ["max", "max-tokens"], ["text_tokens", "text-tokens"]]) {
    if (q.get(p)) $(id).value = q.get(p);
  }
  $("links-url").value = q.get("links") || defaultLinks(index);
  const preset = (q.get("builds") || "").split(",").map((s) => s.trim()).filter(Boolean);
  if ($("links-url").value) {
    try {
      await loadPattern(preset);
    } catch (e) {
      if (!gpuError) throw e;
      // the GPU error comes first; on plain http crypto.subtle, which checks the links' sha256, is hidden too
      showNote(`links not loaded${isSecureContext ? "" : " (plain http also hides crypto.subtle)"}: ${e.message}`);
    }
  }
  if (gpuError && q.get("auto")) throw gpuError;
  if (q.get("auto") === "load") { // load (and cache) the models only: what a visit costs before the first run
    const sys = await ensureSystem();
    return { load_ms: sys.loadMs, verified: sys.verified, load_times: sys.models.map((m) => m.loadTimes) };
  }
  if (q.get("auto") === "1") {
    const mode = q.get("mode") || "both";
    return run(mode === "both" ? ["latent", "text"] : [mode]);
  }
  return null;
}

// Show the error in #error and publish it (with the text shown) for tests: window.__mlcbuildError + a result.
function publishError(e) {
  const x = showError(e);
  for (const tr of $("agents").tBodies[0].rows) {
    if (!["done", "idle"].includes(tr.cells[2].textContent)) setStatus(tr.cells[0].textContent, "failed");
  }
  progress(null, "failed");
  window.__mlcbuildResult = { error: { name: e?.name, message: e?.message, shown: $("error").textContent, ...x },
    builds: index.builds.map((b) => b.name) };
  window.__mlcbuildError = `${e?.name}: ${e?.message}`;
}

main().then((r) => {
  if (r) window.__mlcbuildResult = r;
  else if (q.get("click")) $(q.get("click"))?.click();  // ?click=run-latent: drive a button as a person would
  else if (q.get("pick")) { // ?pick=<links URL>: choose it in the pattern picker as a person would
    const pick = $("links-pick");
    pick.value = at(q.get("pick"));
    if (!pick.value) throw new Error(`the pattern picker does not list ${at(q.get("pick"))}`);
    pick.dispatchEvent(new Event("change"));
  }
}).catch(publishError);
