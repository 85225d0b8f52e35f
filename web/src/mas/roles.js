// Edited role prompts: the JS side of builder/run/roles.py (same rules, same messages, same JSON), so the roles the
// playground exports run unchanged with `mlcbuild run / eval --roles roles.json`.
// `{question}` is the question, `{slot}` a hand-off's place; any other `{word}` is refused rather than kept as literal
// text, since it is almost always a misspelt slot. The graph (slots, edges) stays the links file's.
import { MlcbuildError, PromptTemplateError } from "../runtime/errors.js";
import { Pattern } from "./pattern.js";

export const ROLES_FORMAT = "mlcbuild-roles";
export const ROLES_VERSION = 1;
const MARKER = /\{([\p{L}\p{N}_]+)\}/gu; // Python's r"\{(\w+)\}"
const FIX = "edit the template in the playground (it shows the slots) or export the roles again";
const braces = (names) => names.map((s) => `{${s}}`).join(", ");

// What is wrong with one role's templates (empty: fine).
export function templateErrors(slots, system, user) {
  const marks = [...`${system}`.matchAll(MARKER), ...`${user}`.matchAll(MARKER)].map((m) => m[1]);
  const errors = [];
  if (!marks.includes("question")) errors.push("no {question}: the agent would never see the question");
  const unknown = [...new Set(marks.filter((x) => x !== "question" && !slots.includes(x)))].sort();
  if (unknown.length) {
    errors.push(`unknown slot ${braces(unknown)} (this role's slots: ${braces(slots) || "none"})`);
  }
  const missing = slots.filter((s) => !marks.includes(s));
  if (missing.length) errors.push(`no ${braces(missing)}: the hand-off into it would be dropped`);
  return errors;
}

// The roles whose templates differ from the pattern's (the trained ones): {name: {system, user}}.
export function changedRoles(pattern, edits) {
  const out = {};
  for (const r of pattern.roles) {
    const e = edits[r.name];
    if (e && (e.system !== r.system || e.user !== r.user)) out[r.name] = { system: e.system, user: e.user };
  }
  return out;
}

// The document `mlcbuild run --roles` reads: only the changed roles.
export function rolesDoc(pattern, edits) {
  return { format: ROLES_FORMAT, version: ROLES_VERSION, pattern: pattern.name, roles: changedRoles(pattern, edits) };
}

// A roles document checked against `pattern`: {name: {system, user}} for every role (trained text where not given).
export function parseRolesDoc(doc, pattern, where = "roles") {
  if (!doc || doc.format !== ROLES_FORMAT || typeof doc.roles !== "object" || doc.roles === null) {
    throw new MlcbuildError(`${where}: not a roles file (want format "${ROLES_FORMAT}" and a 'roles' object)`,
      "export it from the playground (Download roles)");
  }
  const names = pattern.agents;
  const unknown = Object.keys(doc.roles).filter((n) => !names.includes(n)).sort();
  if (unknown.length) {
    throw new MlcbuildError(`${where}: no role ${unknown.join(", ")} in pattern ${pattern.name}`,
      `its roles are ${names.join(", ")}`);
  }
  const out = {};
  for (const r of pattern.roles) {
    const e = doc.roles[r.name] ?? {};
    const bad = Object.keys(e).filter((k) => k !== "system" && k !== "user");
    if (bad.length || ["system", "user"].some((k) => k in e && typeof e[k] !== "string")) {
      throw new MlcbuildError(`${where}: role ${r.name} must hold only 'system' and 'user' strings (got ` +
        `${bad.join(", ") || "a non-string"})`, FIX);
    }
    const system = e.system ?? r.system;
    const user = e.user ?? r.user;
    const errors = templateErrors(r.slots, system, user);
    if (errors.length) throw new PromptTemplateError(`${where}: role ${r.name}: ${errors.join("; ")}`, FIX);
    out[r.name] = { system, user };
  }
  return out;
}

// `pattern` with the edited templates (validated first: a bad template never reaches the tokenizer).
export function withRoles(pattern, edits) {
  const roles = pattern.roles.map((r) => {
    const e = edits[r.name];
    if (!e) return r;
    const errors = templateErrors(r.slots, e.system, e.user);
    if (errors.length) throw new PromptTemplateError(`role ${r.name}: ${errors.join("; ")}`, FIX);
    return { ...r, system: e.system, user: e.user };
  });
  return new Pattern(pattern.name, roles, pattern.stages, pattern.edges, pattern.final);
}
