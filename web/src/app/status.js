// Progress per agent: the agents table (agent, build, stage, time in that run) and the overall progress line. The
// stage comes from the calls each agent makes on its own sequence (KV cache), so it is what the GPU is doing.
import { $, el } from "./dom.js";

const STAGE = { hidden: "prefill", prefill: "prefill", decodeHidden: "latent", decode: "decoding" };

export class Status {
  constructor(diagram) {
    this.diagram = diagram;
    this.started = {}; // agent -> performance.now() of its first call in this run
  }

  progress(fraction, text) {
    if (fraction !== null && fraction !== undefined) $("progress").value = fraction;
    $("progress-text").textContent = text;
  }

  // One row per agent of the pattern.
  table(agents) {
    const tb = $("agents").tBodies[0];
    tb.replaceChildren();
    for (const name of agents) {
      const tr = el("tr", null, { id: `agent-${name}` });
      tr.append(el("td", name), el("td", ""), el("td", "idle"), el("td", ""));
      tb.append(tr);
    }
  }

  set(name, status, build) {
    const tr = $(`agent-${name}`);
    if (!tr) return;
    if (build !== undefined) { // the folder name; the whole URL on hover
      tr.cells[1].textContent = String(build).replace(/\/+$/, "").split("/").pop();
      tr.cells[1].title = build;
    }
    tr.cells[2].textContent = status;
    tr.cells[2].className = `stage stage-${status}`;
    if (this.started[name] !== undefined && tr.cells[3]) {
      tr.cells[3].textContent = `${((performance.now() - this.started[name]) / 1000).toFixed(1)} s`;
    }
    this.diagram.setStatus(name, status);
  }

  // Every agent's status set to `status` (e.g. "waiting" before a mode runs).
  all(names, status) {
    this.started = {};
    for (const n of names) this.set(n, status);
  }

  // Wrap each agent's sequence so its calls report its stage; returns a function that marks every agent done.
  instrument(agents) {
    let current = null;
    for (const [name, a] of Object.entries(agents)) {
      const seq = a.seq.__target ?? a.seq;
      a.seq = new Proxy(seq, {
        get: (t, k) => {
          if (k === "__target") return t;
          const v = t[k];
          if (typeof v !== "function") return v;
          return (...args) => {
            if (STAGE[k]) {
              if (current && current !== name) this.set(current, "done");
              current = name;
              this.started[name] ??= performance.now();
              this.set(name, STAGE[k]);
            }
            return v.apply(t, args);
          };
        },
      });
    }
    return () => { for (const n of Object.keys(agents)) this.set(n, "done"); current = null; };
  }
}
