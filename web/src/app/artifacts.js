// Where the playground finds builds and links: an artifacts base URL (?artifacts=, default "dist/" next to the page)
// holding builds.json (written by `mlcbuild make` and the release), else the index.json `mlcbuild serve` generates
// for older folders. The base may be another origin (it must send CORS headers): a static folder, GitHub Pages, or a
// Hugging Face repo's .../resolve/main/. Every URL is made absolute against the file that named it.

// ?artifacts= (or the older ?dist=) as an absolute folder URL.
export function artifactsBase(params, here = location.href) {
  let raw = (params.get("artifacts") || params.get("dist") || "dist/").trim();
  if (/\/[^/]+\.json$/.test(raw)) raw = raw.replace(/[^/]+$/, ""); // the URL of builds.json itself
  const url = new URL(raw.endsWith("/") ? raw : `${raw}/`, here);
  // a Hugging Face repo page: its files are under resolve/<branch>/
  if (url.hostname === "huggingface.co" && !url.pathname.includes("/resolve/")) {
    const repo = url.pathname.split("/").filter(Boolean).slice(0, url.pathname.startsWith("/datasets/") ? 3 : 2);
    url.pathname = `/${repo.join("/")}/resolve/main/`;
  }
  return url.href;
}

// GitHub serves release downloads without CORS headers: a page on another origin can never read them.
export function corsHint(base) {
  const u = new URL(base);
  if (u.hostname === "github.com" && u.pathname.includes("/releases/")) {
    return "GitHub release downloads carry no CORS headers, so a web page cannot read them: unpack the release's " +
      "build tarballs next to its builds.json on any static host (or GitHub Pages), or use its Hugging Face copy " +
      "(https://huggingface.co/USER/REPO/resolve/main/)";
  }
  return "the host must send Access-Control-Allow-Origin for files read from another origin";
}

function fromBuildsJSON(doc, at) {
  const abs = (u) => new URL(u, at).href;
  const builds = (doc.builds ?? []).map((b) => ({ ...b, url: abs(b.folder ?? b.url),
    links: (b.links ?? []).map(abs) }));
  const byName = Object.fromEntries(builds.map((b) => [b.name, b]));
  const links = (doc.links ?? []).map((l) => ({ ...l, url: abs(l.file ?? l.url),
    agents: (l.agents ?? []).map((a) => ({ ...a, builds: (a.builds ?? []).map((n) => byName[n]).filter(Boolean) })) }));
  return { builds, links, source: at.href };
}

function fromServeIndex(doc, at) {
  const abs = (u) => new URL(u, at).href;
  const builds = (doc.builds ?? []).map((b) => ({ ...b, url: abs(b.url), links: (b.links ?? []).map(abs) }));
  return { builds, links: (doc.links ?? []).map((u) => ({ url: abs(u), agents: [] })), source: at.href };
}

// {builds: [{name, url, model, quantization, libs, hidden_size, sizes?, links: [url]}], links: [{url, pattern?,
// agents: [{name, builds: [build]}]}], source, error?}
export async function loadIndex(base) {
  let error = null;
  for (const name of ["builds.json", "index.json"]) {
    const at = new URL(name, base);
    try {
      const res = await fetch(at, { cache: "no-cache" });
      if (!res.ok) continue;
      const doc = await res.json();
      return name === "builds.json" ? fromBuildsJSON(doc, at) : fromServeIndex(doc, at);
    } catch (e) {
      error = `cannot read ${at.href}: ${e.message} (${corsHint(base)})`;
    }
  }
  return { builds: [], links: [], source: null, error };
}

export function defaultLinks(index) {
  const first = index.builds.find((b) => b.links?.length);
  return first ? first.links[0] : index.links[0]?.url ?? "";
}

// The build for one role of a links file: one made from the weights the agent was trained on (builds.json knows),
// preferring the folder the links file sits in; else by model name, hidden size, or the first WebGPU build.
export function guessBuild(index, linksUrl, role, agent) {
  const webgpu = (b) => b.libs?.webgpu;
  const info = index.links.find((l) => l.url === linksUrl);
  const fits = (info?.agents.find((a) => a.name === role)?.builds ?? []).filter(webgpu);
  const home = fits.find((b) => linksUrl.startsWith(b.url));
  if (home || fits.length) return (home ?? fits[0]).url;
  const all = index.builds.filter(webgpu);
  const id = String(agent.model_id ?? "").toLowerCase();
  const byName = all.find((b) => id && (id.includes(String(b.model).toLowerCase()) ||
    String(b.model).toLowerCase().includes(id.split("/").pop())));
  return (byName ?? all.find((b) => b.hidden_size === agent.hidden_size) ?? all[0])?.url ?? "";
}

export function describe(b) {
  const mb = b.sizes?.webgpu ? ` ${(b.sizes.webgpu / 1e6).toFixed(b.sizes.webgpu < 1e7 ? 1 : 0)} MB` : "";
  return `${b.name}${b.libs?.webgpu ? mb : " (no webgpu lib)"}`;
}

// A links file as the pattern picker shows it: "pattern (agent d=.., ...)"; its file name when the index (a generated
// index.json) does not say.
export function linksLabel(l) {
  if (!l.pattern) return decodeURIComponent(new URL(l.url).pathname.split("/").pop());
  return `${l.pattern} (${(l.agents ?? []).map((a) => `${a.name} d=${a.hidden_size}`).join(", ")})`;
}
