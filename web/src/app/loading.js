// Loading the agents' models for the page: cheap checks first (the links against the builds' dims and weights, from
// their small JSON files), then Model.load, which checks every weight shard's sha256 against manifest.json (cache.js
// fills tvmjs' Cache API scope with verified bytes only) and loads from that cache.
import { loadSystem } from "../mas/loop.js";
import { fetchJSON } from "../runtime/fetching.js";
import { LinkMismatchError } from "../runtime/errors.js";

// urls: one build folder per pattern agent; links: the LinkSet (read once when the pattern was set up: 37 MB for
// SmolLM2's three agents). Returns the system with loadMs and verified ({url: cache verdict}).
export async function loadChecked(urls, links, { force = false, status, note }) {
  const t0 = performance.now();
  const unique = [...new Set(urls.filter(Boolean))]; // null: a role the other machine runs (app/session.js)
  const nModels = unique.length;
  if (urls.length !== links.pattern.agents.length) {
    throw new LinkMismatchError(`pattern ${links.pattern.name} has ${links.pattern.agents.length} agents, got ` +
      `${urls.length} build(s)`, "pass one build folder per agent, in order");
  }
  const dims = {};
  const weights = {};
  const meta = {};  // one config and manifest fetch per distinct build, however many roles share it
  for (const [i, n] of links.pattern.agents.entries()) {
    if (!urls[i]) continue;
    const build = new URL(urls[i]);
    // in this order, so a missing build is reported by its config file first
    meta[build.href] ??= [await fetchJSON(new URL("mlc-chat-config.json", build)),
      await fetchJSON(new URL("manifest.json", build))];
    const [cfg, manifest] = meta[build.href];
    dims[n] = cfg.hidden_size ?? cfg.model_config?.hidden_size;
    weights[n] = { sha256: manifest.source?.sha256, where: urls[i] };
  }
  links.checkDims(dims);
  for (const w of links.checkWeights(weights, { force })) {
    console.warn(w);
    note(`warning: ${w}`);
  }
  let done = 0;
  const system = await loadSystem(urls, links, {
    onProgress: (p) => {
      if (p.stage === "ready") done += 1;
      const f = (done + (p.stage === "weights" ? p.fraction ?? 0 : 0)) / nModels;
      const what = p.stage === "verify" ? "verifying" : "loading";
      status.progress(Math.min(f, 1), `${what} ${p.url ?? ""}: ${p.stage}${p.text ? ` (${p.text})` : ""}`);
    },
  });
  system.loadMs = performance.now() - t0;
  system.verified = Object.fromEntries(unique.map((u) => [u, system.models.find((m) => m.baseUrl === u)?.verified]));
  for (const [u, v] of Object.entries(system.verified)) {
    if (v?.rebuilt) note(`${u} was rebuilt since your last visit: its cached files were dropped and fetched again`);
  }
  status.progress(1, `loaded ${nModels} model(s) in ${(system.loadMs / 1000).toFixed(1)} s`);
  return system;
}
