// The role editor: each role's system and user templates, editable, with its slot markers listed, a message in place
// for a bad template, a note (and a reset) when the prompts differ from the ones the links were trained with, and
// the roles JSON `mlcbuild run / eval --roles` reads. Field ids: role-<name>-system, role-<name>-user.
import { changedRoles, rolesDoc, templateErrors } from "../mas/roles.js";
import { $, el } from "./dom.js";

export class RolesEditor {
  constructor(box, onChange = () => {}) {
    this.box = box;
    this.onChange = onChange;
    this.pattern = null; // the links file's pattern: its roles are the trained prompts
  }

  // Draw one editor per role of `pattern`, filled with `edits` ({name: {system, user}}) or the trained prompts.
  show(pattern, edits = {}) {
    this.pattern = pattern;
    this.box.replaceChildren();
    const head = el("div", null, { className: "roles-head" });
    const note = el("span", "", { id: "roles-note", className: "note-changed" });
    const reset = el("button", "Reset to trained prompts", { id: "roles-reset", type: "button", className: "small" });
    reset.onclick = () => this.set({});
    head.append(note, reset);
    this.box.append(head);
    for (const r of pattern.roles) {
      const card = el("div", null, { className: "role-card", id: `role-card-${r.name}` });
      const slots = r.slots.length ? r.slots.map((s) => `{${s}}`).join(" ") : "(none)";
      const title = el("div", null, { className: "role-title" });
      title.append(el("strong", r.name), el("span", ` writes: ${r.target} · markers: {question} ${slots}`,
        { className: "muted" }));
      card.append(title);
      for (const field of ["system", "user"]) {
        const id = `role-${r.name}-${field}`;
        const ta = el("textarea", null, { id, rows: field === "user" ? 3 : 2, spellcheck: false });
        ta.value = String(edits[r.name]?.[field] ?? r[field]);
        ta.addEventListener("input", () => this.refresh());
        const lab = el("label", `${field} template`, { className: "stack", htmlFor: id });
        card.append(lab, ta);
      }
      card.append(el("div", "", { className: "field-error", id: `role-${r.name}-error`, role: "alert" }));
      this.box.append(card);
    }
    this.refresh();
  }

  // Replace every template ({} = the trained prompts) as a person typing would.
  set(edits) {
    for (const r of this.pattern?.roles ?? []) {
      for (const f of ["system", "user"]) $(`role-${r.name}-${f}`).value = String(edits[r.name]?.[f] ?? r[f]);
    }
    this.refresh();
  }

  // {name: {system, user}} as shown.
  edits() {
    return Object.fromEntries((this.pattern?.roles ?? []).map((r) => [r.name,
      { system: $(`role-${r.name}-system`).value, user: $(`role-${r.name}-user`).value }]));
  }

  changed() { return this.pattern ? changedRoles(this.pattern, this.edits()) : {}; }

  // {name: [message]} for roles with a bad template.
  errors() {
    const out = {};
    for (const r of this.pattern?.roles ?? []) {
      const e = this.edits()[r.name];
      const errs = templateErrors(r.slots, e.system, e.user);
      if (errs.length) out[r.name] = errs;
    }
    return out;
  }

  doc() { return rolesDoc(this.pattern, this.edits()); }

  refresh() {
    if (!this.pattern) return;
    const errors = this.errors();
    const changed = Object.keys(this.changed());
    for (const r of this.pattern.roles) {
      const errs = errors[r.name] ?? [];
      $(`role-${r.name}-error`).textContent = errs.length ? `Fix this template: ${errs.join("; ")}.` : "";
      $(`role-card-${r.name}`).classList.toggle("bad", errs.length > 0);
      $(`role-card-${r.name}`).classList.toggle("edited", changed.includes(r.name));
    }
    $("roles-note").textContent = changed.length
      ? `Edited: ${changed.join(", ")}. The links were trained with other prompts, so answers may get worse.`
      : "The prompts the links were trained with.";
    $("roles-reset").disabled = !changed.length;
    this.onChange({ changed, errors });
  }
}
