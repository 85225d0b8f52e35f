// Collaboration patterns as data (train_links/patterns.py): ordered stages, roles with slot-templated prompts, and
// edges `src -> dst:slot` (an edge marked next_round feeds the next recursion round). Read from recursivelink.json.
import { MlcbuildError } from "../runtime/errors.js";

export class Pattern {
  constructor(name, roles, stages, edges, final) {
    this.name = name;
    this.roles = roles; // [{name, system, user, slots, target}] in agent order
    this.stages = stages; // [[agent, ...], ...]
    this.edges = edges.map((e) => ({ ...e, next_round: Boolean(e.next_round), key: `${e.src}->${e.dst}:${e.slot}` }));
    this.final = final;
  }

  get agents() { return this.roles.map((r) => r.name); }
  role(name) { return this.roles.find((r) => r.name === name); }
  order() { return this.stages.flat(); }
  incoming(dst) { return this.edges.filter((e) => e.dst === dst); }

  // Pattern.validate in Python: the same rules, the same messages.
  validate() {
    const names = this.agents;
    const err = (what, fix) => new MlcbuildError(`pattern ${this.name}: ${what}`, fix);
    const list = (x) => JSON.stringify(x);
    if (new Set(names).size !== names.length) {
      throw err(`duplicate agent names ${list(names)}`, "give each agent a unique name");
    }
    const order = this.order();
    if (JSON.stringify([...order].sort()) !== JSON.stringify([...names].sort())) {
      throw err(`stages ${list(order)} must list each agent ${list(names)} once`, "fix the pattern's stages");
    }
    const last = this.stages[this.stages.length - 1];
    if (!names.includes(this.final) || !last || last.length !== 1 || last[0] !== this.final) {
      throw err(`final agent ${list(this.final)} must be alone in the last stage`, "fix the pattern's final agent");
    }
    const stageOf = {};
    this.stages.forEach((s, i) => s.forEach((a) => { stageOf[a] = i; }));
    for (const e of this.edges) {
      if (!names.includes(e.src) || !names.includes(e.dst)) {
        throw err(`edge ${e.key} names an unknown agent`, `agents are ${names}`);
      }
      if (!this.role(e.dst).slots.includes(e.slot)) {
        throw err(`edge ${e.key}: ${e.dst} has no slot ${list(e.slot)}`,
          `its slots are ${list(this.role(e.dst).slots)}`);
      }
      if (!e.next_round && stageOf[e.src] >= stageOf[e.dst]) {
        throw err(`edge ${e.key} goes backwards within a round`, "mark it next_round or reorder the stages");
      }
    }
    return this;
  }

  // from_json: the graph from the file, the prompts from `roles` ({name: role}).
  static fromJSON(obj, roles) {
    const missing = obj.agents.filter((a) => !roles[a]);
    if (missing.length) {
      throw new MlcbuildError(`pattern ${obj.name}: no prompt for agent(s) ${JSON.stringify(missing)}`);
    }
    if (!Array.isArray(obj.stages) || !obj.stages.every(Array.isArray) || !Array.isArray(obj.edges)) {
      throw new TypeError("stages and edges must be lists");
    }
    const edges = obj.edges.map((e) => {
      for (const k of ["src", "dst", "slot"]) {
        if (typeof e[k] !== "string") throw new TypeError(`edge ${k} must be a string`);
      }
      return { src: e.src, dst: e.dst, slot: e.slot, next_round: Boolean(e.next_round ?? false) };
    });
    const stages = obj.stages.map((s) => [...s]);
    return new Pattern(obj.name, obj.agents.map((a) => roles[a]), stages, edges, obj.final).validate();
  }
}
