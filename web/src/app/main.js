// The playground page (web/index.html): pick a links file (its pattern) and a build per role, edit the roles' prompts
// (roles-editor.js), ask a question (or pick an example), run one agent / the text MAS / the latent MAS, watch the
// pattern (diagram.js), every agent's stage (status.js) and turn (transcript.js), then share the setup as a link or
// keep the run as a file (share.js).
// Artifacts come from a base URL (?artifacts=, artifacts.js) that may be another origin; build and links URLs are
// relative to it. URL params (?auto=1&builds=..&links=..&r=..&m=..&max=..&q=..&roles=..&mode=both) run without clicks
// and publish window.__mlcbuildResult (or window.__mlcbuildError plus a result carrying the #error text) for tests;
// the buttons publish the same way, ?auto=load only loads (and caches) the models, ?fill={"id": "text"} types into
// fields, ?click=<button id> (without auto) presses one after the page is set up, ?pick=<links URL> chooses that
// links file in the pattern picker, and ?view=<run file URL> shows a saved run without running.
import { runLatent, runSingle, runText } from "../mas/loop.js";
import { loadLinks } from "../mas/links.js";
import { parseRolesDoc, withRoles } from "../mas/roles.js";
import { fetchJSON } from "../runtime/fetching.js";
import { PeerError, PromptTemplateError } from "../runtime/errors.js";
import { detectGPU } from "../runtime/model.js";
import { clearArtifactCache } from "../runtime/cache.js";
import { clearError, showError, showNote } from "./messages.js";
import { $, el } from "./dom.js";
import { answerMeta, peekHandoffs, showAnswer, showHandoffs, showTable } from "./results.js";
import { showSaved, views } from "./record-view.js";
import { artifactsBase, defaultLinks, describe, guessBuild, linksLabel, loadIndex } from "./artifacts.js";
import { Diagram } from "./diagram.js";
import { RolesEditor } from "./roles-editor.js";
import { Transcript, agentTokens } from "./transcript.js";
import { Status } from "./status.js";
import { loadChecked } from "./loading.js";
import { keyboardSubmit, setupExamples, showExpected, trainedBudget } from "./controls.js";
import { Session, bindSession } from "./session.js";
import { checkRecord, downloadJSON, readJSONFile, recordOf, rolesFromParams, runRecord, shareUrl } from "./share.js";

const q = new URLSearchParams(location.search);
const base = artifactsBase(q);
const at = (u) => new URL(u, base).href; // a typed or preset build / links URL, relative to the artifacts base
let index = { builds: [], links: [] };
let pattern = null; // {agents: [...], links file meta}
let system = null; // loaded system, keyed by systemKey
let systemKey = null;
let busy = false;
let lastRun = null; // the last run record (Download run)
const diagram = new Diagram($("diagram"));
const status = new Status(diagram);
const roles = new RolesEditor($("role-prompts"));
const transcript = new Transcript($("transcript"));
// roles on another machine (the card "Across machines"): a joined page runs its roles of the host's questions
const session = new Session({ diagram, onRunRequest: (job) => run(["latent"], job).then(publish),
  onError: (e) => publishError(e) });
const publish = (r) => { if (r) window.__mlcbuildResult = r; };

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

async function loadPattern(preset = [], edits = {}) {
  const url = $("links-url").value.trim();
  if (!url) throw new Error("no recursivelink.json URL: type one in the links field");
  const ls = await loadLinks(at(url));
  pattern = { agents: ls.pattern.agents, rounds: ls.rounds, m: ls.m, name: ls.pattern.name, url, links: ls };
  syncPicker(at(url));
  // r, m and the answer budget follow the links file unless the user (or the URL) set them
  for (const [id, value] of [["rounds", ls.rounds], ["m", ls.m], ["max-tokens", trainedBudget(ls.meta.training)]]) {
    if ($(id).value && !$(id).dataset.fromLinks) continue;
    $(id).value = value;
    $(id).dataset.fromLinks = "1";
  }
  const box = $("roles");
  box.replaceChildren(el("div", `pattern ${ls.pattern.name}: a build for each role`, { className: "muted" }));
  const drawn = {};
  ls.pattern.agents.forEach((name, i) => {
    const guess = preset[i] ?? guessBuild(index, at(url), name, ls.agents[name]);
    drawn[name] = { build: guess, d: ls.agents[name].hidden_size };
    const input = el("input", null, { id: `role-${name}`, value: guess });
    input.setAttribute("list", "build-list");
    input.addEventListener("input", () => diagram.setBuild(name, input.value));
    const lab = el("label", `${name} (d=${ls.agents[name].hidden_size})`, { className: "stack" });
    lab.append(input);
    box.append(lab);
  });
  // edited prompts (a share link's, or the editor's before a reload) for the roles this pattern has; a bad one is
  // shown in place, marked, and stops a run until fixed
  const dropped = Object.keys(edits).filter((n) => !ls.pattern.agents.includes(n));
  if (dropped.length) showNote(`prompts for ${dropped.join(", ")} ignored: ${ls.pattern.name} has no such role`);
  roles.show(ls.pattern, edits);
  status.table(ls.pattern.agents);
  diagram.draw(ls.pattern, drawn);
  session.setPattern(ls);
}

// What the page shows for the loaded pattern (published after Load pattern or a pick, for tests).
function patternState() {
  return { pattern: pattern.name, links: at(pattern.url), picked: $("links-pick").value,
    roles: Object.fromEntries(pattern.agents.map((n) => [n, $(`role-${n}`).value])),
    agents: Array.from($("agents").tBodies[0].rows, (tr) => tr.cells[0].textContent), diagram: diagram.read(),
    choices: Array.from($("links-pick").options, (o) => o.textContent), rounds: $("rounds").value, m: $("m").value };
}

// Every field a share link restores.
function pageState() {
  return { artifacts: $("artifacts").value.trim() || base, links: $("links-url").value.trim(),
    builds: (pattern?.agents ?? []).map((n) => $(`role-${n}`).value.trim()), r: $("rounds").value, m: $("m").value,
    max: $("max-tokens").value, text_tokens: $("text-tokens").value, q: $("question").value,
    roles: roles.changed() };
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
  const remote = session.remoteRoles(); // roles the other machine runs: no build loads here
  const typed = pattern.agents.map((n) => (remote.includes(n) ? "" : $(`role-${n}`).value.trim()));
  const missing = pattern.agents.filter((n, i) => !typed[i] && !remote.includes(n));
  if (missing.length) throw new Error(`no build assigned to ${missing.join(", ")}`);
  const urls = typed.map((u) => (u ? at(u) : null));
  const linksUrl = $("links-url").value.trim();
  const key = JSON.stringify([urls, linksUrl]);
  if (system && systemKey === key) return system;
  pattern.agents.forEach((n, i) => status.set(n, urls[i] ? "loading" : "remote", urls[i] ?? "other machine"));
  system = await loadChecked(urls, pattern.links, { force: q.get("force_links") === "1", status, note: showNote });
  systemKey = key;
  system.finish = status.instrument(system.agents);
  Object.keys(system.agents).forEach((n) => status.set(n, "ready"));
  return system;
}

// A bad template stops a run before anything loads (its message is already shown under the field).
function checkRoles() {
  const bad = Object.entries(roles.errors());
  if (bad.length) {
    throw new PromptTemplateError(`role ${bad[0][0]}: ${bad[0][1].join("; ")}`,
      "fix the template marked in red under Prompts, or press Reset to trained prompts");
  }
}

// The edited prompts onto the loaded agents (an agent whose prompt changed re-splits it and starts cold).
function applyRoles(sys) {
  const pat = withRoles(sys.pattern, roles.edits());
  for (const [n, a] of Object.entries(sys.agents)) {
    const r = pat.role(n);
    if (a.role.system !== r.system || a.role.user !== r.user) a.setRole(r);
  }
}

const RUNNERS = { single: runSingle, text: runText, latent: runLatent };

// job: a run the other machine started ({question, rounds, m, max_new_tokens}); otherwise the page's fields.
async function run(modes, job = null) {
  if (busy) return null;
  busy = true;
  clearError();
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  const results = {};
  try {
    checkRoles();
    const sys = await ensureSystem();
    applyRoles(sys);
    if (job && !session.peer) throw new PeerError("the other machine left before its run started", "connect again");
    if (!job && session.peer && !session.starts) {
      throw new PeerError("this page joined a session: the host asks the questions", "ask on the host's page, or Leave");
    }
    if (job) {
      $("question").value = job.question;
      for (const [id, v] of [["rounds", job.rounds], ["m", job.m], ["max-tokens", job.max_new_tokens]]) {
        if (v) $(id).value = v;
      }
    }
    const opts = { ...readOpts(), peer: session.peer ?? undefined };
    const question = $("question").value;
    if (opts.peer && modes.some((md) => md !== "latent")) {
      throw new Error("roles run on another machine: only the latent MAS runs split (Leave to run the others)");
    }
    const state = pageState();
    const prompts = roles.edits();
    $("answers").replaceChildren();
    transcript.clear();
    showHandoffs([]);
    const drawn = {}; // the diagram as each mode left it
    for (const mode of modes) {
      status.progress(null, `running ${mode}...`);
      diagram.begin(mode);
      transcript.begin(mode, prompts, question);
      status.all(Object.keys(sys.agents), "waiting");
      showAnswer(mode, "…");
      if (mode === "latent" && !job) session.announce(question, opts);
      const res = await RUNNERS[mode](sys.agents, sys.links, sys.pattern, question, { ...opts, onEvent: (ev) => {
        diagram.event(ev);
        transcript.event(ev);
        if (ev.type === "token" && ev.agent === sys.pattern.final) showAnswer(mode, ev.text);
      } });
      sys.finish();
      diagram.end();
      drawn[mode] = diagram.read();
      if (mode === "latent") {
        status.progress(null, "peeking at the hand-offs...");
        const pk = await peekHandoffs(sys, res);
        showHandoffs(pk.rows, pk.note);
        res.peek = pk;
      }
      results[mode] = res;
      transcript.finish(mode, recordOf(res), prompts, question);
      showAnswer(mode, res.answer, answerMeta(res.metrics));
      showTable(results);
    }
    status.progress(1, "done");
    lastRun = runRecord(state, prompts, modes, Object.fromEntries(modes.map((m) => [m, recordOf(results[m])])),
      { pattern: sys.pattern.name, load_ms: sys.loadMs });
    const out = { load_ms: sys.loadMs, pattern: sys.pattern.name, modes, verified: sys.verified,
      load_times: sys.models.map((m) => m.loadTimes) };
    for (const [mode, res] of Object.entries(results)) {
      out[mode] = { answer: res.answer, answer_ids: res.answer_ids,
        metrics: Object.fromEntries(Object.entries(res.metrics).filter(([k]) => k !== "stages")),
        agent_tokens: agentTokens(res.metrics), diagram: drawn[mode] };
      if (res.peek) out[mode].handoffs = res.peek.rows;
      if (res.wire) out[mode].wire = res.wire;
    }
    return { ...out, ...views(transcript), share: shareUrl(state), roles_doc: roles.doc(), record: lastRun };
  } catch (e) {
    diagram.end("failed");
    throw e;
  } finally {
    busy = false;
    for (const b of document.querySelectorAll("button")) b.disabled = false;
    roles.refresh(); // its Reset button is enabled only when a prompt differs
  }
}

// A saved run, shown without running (record-view.js); it becomes the run Download run saves.
function showRecord(doc, where) {
  lastRun = checkRecord(doc, where);
  return showSaved(doc, { transcript, status });
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
    await loadPattern([], roles.changed());
    return patternState();
  };
  $("load-links").onclick = guard(reload);
  for (const id of ["rounds", "m", "max-tokens"]) $(id).addEventListener("input", () => delete $(id).dataset.fromLinks);
  $("links-pick").onchange = guard(async () => {
    if (!$("links-pick").value) return null; // "(the URL below)": nothing to change
    $("links-url").value = $("links-pick").value;
    system = null;
    await loadPattern();
    return patternState();
  });
  $("run-latent").onclick = guard(() => run(["latent"]));
  $("run-text").onclick = guard(() => run(["text"]));
  $("run-both").onclick = guard(() => run(["latent", "text"]));
  $("run-all").onclick = guard(() => run(["single", "text", "latent"]));
  $("clear-cache").onclick = guard(async () => {
    const n = await clearArtifactCache();
    system = null;
    status.progress(null, `cache cleared (${n} cache(s))`);
  });
  $("share").onclick = guard(async () => {
    const url = shareUrl(pageState());
    $("share-url").value = url;
    $("share-url").hidden = false;
    $("share-url").select();
    await navigator.clipboard?.writeText(url).then(() => status.progress(null, "share link copied"), () => {});
    return null;
  });
  $("download-run").onclick = guard(async () => {
    if (!lastRun) throw new Error("nothing to download yet: run a question first");
    downloadJSON(`mlcbuild-run-${lastRun.pattern ?? "run"}.json`, lastRun);
  });
  $("download-roles").onclick = guard(async () => downloadJSON("roles.json", roles.doc()));
  $("load-run").onchange = guard(async () => {
    const f = $("load-run").files[0];
    return f ? showRecord(await readJSONFile(f), f.name) : null;
  });
  $("load-roles").onchange = guard(async () => {
    const f = $("load-roles").files[0];
    if (!f || !pattern) return null;
    roles.set(parseRolesDoc(await readJSONFile(f), pattern.links.pattern, f.name));
    return null;
  });
  bindSession(session, { guard, weights: roleWeights });
  setupExamples();
  keyboardSubmit("run-latent");
}

// This page's builds' weights sha256 for `names` (what its hand-off frames carry).
async function roleWeights(names) {
  const out = {};
  for (const n of names) {
    const m = await fetchJSON(new URL("manifest.json", at($(`role-${n}`).value.trim())));
    out[n] = m.source?.sha256 ?? "";
  }
  return out;
}

async function main() {
  bind();
  addEventListener("pagehide", () => session.leave("this page closed")); // the other side hears bye at once
  await session.probe();
  if (q.get("view")) return showRecord(await fetchJSON(new URL(q.get("view"), location.href)), q.get("view"));
  // no WebGPU (or no adapter): say what to do at once; the builds and links still load, nothing is downloaded
  const gpuError = await detectGPU().then(() => null, (e) => e);
  if (gpuError) showError(gpuError);
  await showIndex();
  if (q.get("q")) $("question").value = q.get("q");
  showExpected();
  for (const [p, id] of [["r", "rounds"], ["m", "m"], ["max", "max-tokens"], ["text_tokens", "text-tokens"]]) {
    if (q.get(p)) $(id).value = q.get(p);
  }
  $("links-url").value = q.get("links") || defaultLinks(index);
  const preset = (q.get("builds") || "").split(",").map((s) => s.trim()).filter(Boolean);
  if ($("links-url").value) {
    try {
      await loadPattern(preset, rolesFromParams(q));
    } catch (e) {
      if (!gpuError) throw e;
      // the GPU error comes first; on plain http crypto.subtle, which checks the links' sha256, is hidden too
      showNote(`links not loaded${isSecureContext ? "" : " (plain http also hides crypto.subtle)"}: ${e.message}`);
    }
  }
  for (const [id, value] of Object.entries(q.get("fill") ? JSON.parse(q.get("fill")) : {})) {
    $(id).value = value; // as typed: the field's listeners run
    $(id).dispatchEvent(new Event("input"));
  }
  if (gpuError && q.get("auto")) throw gpuError;
  if (q.get("session")) { // ?session=server|host|join&room=NAME&here=solver: connect as the buttons would
    const here = q.get("here")?.split(",");
    for (const n of pattern?.agents ?? []) if (here) $(`here-${n}`).checked = here.includes(n);
    await session.connect(q.get("session"), { room: q.get("room"), weights: roleWeights });
    if (!session.starts) return null; // a joiner runs when the host starts a run
  }
  if (q.get("auto") === "load") { // load (and cache) the models only: what a visit costs before the first run
    const sys = await ensureSystem();
    return { load_ms: sys.loadMs, verified: sys.verified, load_times: sys.models.map((m) => m.loadTimes) };
  }
  if (q.get("auto") === "1") {
    const mode = q.get("mode") || "both";
    return run({ both: ["latent", "text"], all: ["single", "text", "latent"] }[mode] ?? [mode]);
  }
  if (q.get("state")) return { state: pageState(), prompts: roles.edits() }; // ?state=1: the restored fields
  return null;
}

// Show the error in #error and publish it (with the text shown) for tests: window.__mlcbuildError + a result.
function publishError(e) {
  const x = showError(e);
  for (const tr of $("agents").tBodies[0].rows) {
    if (!["done", "idle"].includes(tr.cells[2].textContent)) status.set(tr.cells[0].textContent, "failed");
  }
  status.progress(null, "failed");
  const inPlace = [...document.querySelectorAll(".field-error")].filter((d) => d.textContent);
  window.__mlcbuildResult = { error: { name: e?.name, message: e?.message, shown: $("error").textContent, ...x },
    builds: index.builds.map((b) => b.name),
    field_errors: Object.fromEntries(inPlace.map((d) => [d.id, d.textContent])) };
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
