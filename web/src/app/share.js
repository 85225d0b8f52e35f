// Sharing and keeping runs: a share link that restores every field from the URL alone, and a run file (JSON: the
// config, answers, hand-off statistics, timings and transcripts) to download and load back without running.
// Page state: {artifacts, links, builds: [url], r, m, max, text_tokens, q, roles: {name: {system, user}} (changed
// roles only), family}. URL params keep the names the page has always read (?artifacts=&links=&builds=&r=&m=...).
export const RUN_FORMAT = "mlcbuild-run";
export const RUN_VERSION = 1;

// UTF-8 JSON as base64url: prompts may hold any text, and a URL keeps it intact.
export function packJSON(obj) {
  const bytes = new TextEncoder().encode(JSON.stringify(obj));
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function unpackJSON(text) {
  const b64 = text.replaceAll("-", "+").replaceAll("_", "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
}

// The page's URL for `state` (the page itself, without its old query).
export function shareUrl(state, here = location.href) {
  const u = new URL(here);
  u.search = "";
  u.hash = "";
  const p = u.searchParams;
  const put = (k, v) => { if (v !== undefined && v !== null && `${v}` !== "") p.set(k, `${v}`); };
  put("artifacts", state.artifacts);
  put("links", state.links);
  put("builds", (state.builds ?? []).join(","));
  for (const k of ["r", "m", "max", "text_tokens", "q"]) put(k, state[k]);
  if (state.roles && Object.keys(state.roles).length) put("roles", packJSON(state.roles));
  return u.href;
}

// The roles a share link carries ({} when none); a damaged parameter says so instead of failing silently.
export function rolesFromParams(q) {
  const raw = q.get("roles");
  if (!raw) return {};
  try {
    return unpackJSON(raw);
  } catch (e) {
    throw new Error(`the link's roles parameter is damaged (${e.message}): copy the whole share link again`);
  }
}

export function runRecord(state, prompts, modes, results, extra = {}) {
  return { format: RUN_FORMAT, version: RUN_VERSION, saved: new Date().toISOString(), config: { ...state, prompts },
    modes, results, ...extra };
}

// A mode's result as a run file keeps it (no tensors: the hand-offs as their peek rows, from the page's peek).
export function recordOf(res) {
  return { answer: res.answer, answer_ids: res.answer_ids, metrics: res.metrics, turns: res.turns,
    handoffs: res.peek?.rows ?? [], peek_note: res.peek?.note ?? "", ...(res.wire ? { wire: res.wire } : {}) };
}

export function checkRecord(doc, where = "run file") {
  if (!doc || doc.format !== RUN_FORMAT || typeof doc.results !== "object" || !Array.isArray(doc.modes)) {
    throw new Error(`${where} is not a run the playground saved (want format "${RUN_FORMAT}"): use Download run`);
  }
  if (doc.version !== RUN_VERSION) throw new Error(`${where}: version ${doc.version}, this page reads ${RUN_VERSION}`);
  return doc;
}

// Save `obj` as a .json file the way a person downloads one.
export function downloadJSON(name, obj) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(obj, null, 1)], { type: "application/json" }));
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export async function readJSONFile(file) {
  try {
    return JSON.parse(await file.text());
  } catch (e) {
    throw new Error(`${file.name} is not JSON (${e.message})`);
  }
}
