// "Across machines": split the pattern's roles between this page and another machine. The other side is either
// `mlcbuild serve --run-roles ...` (its roles on a CPU, over a WebSocket) or another page (WebRTC, paired through
// the server's signaling relay, or by copying two codes between the pages when the site is static). Hand-offs
// cross as frames (mas/wire.js); the diagram marks the remote roles and shows each hand-off's bytes and time.
//
// The page that starts a run sends `run` with the question; a page that joined a WebRTC session waits for it and
// runs its roles of the same question (onRunRequest). URL params for tests: ?session=server|host|join&room=NAME.
import { Peer } from "../mas/peer.js";
import { hostChannel, joinChannel, pasteSignal, signalRelay } from "../runtime/rtc.js";
import { $, el } from "./dom.js";

export class Session {
  constructor({ diagram, onRunRequest, onError }) {
    Object.assign(this, { diagram, onRunRequest, onError });
    this.peer = null;
    this.info = null; // /peer.json from mlcbuild serve (null on a static site)
    this.links = null;
    this.starts = true; // this page sends `run` (false for a WebRTC joiner)
  }

  // Where the WebSocket side is, if the page came from `mlcbuild serve` (the bundled static site never asks).
  async probe() {
    this.info = null;
    if (globalThis.mlcbuildServe) {
      try {
        const res = await fetch(new URL("/peer.json", location.href), { cache: "no-cache" });
        this.info = res.ok ? await res.json() : null;
      } catch { /* no server side: copy-paste sessions */ }
    }
    $("session-server").hidden = !this.info?.roles;
    if (this.info?.roles) $("session-server").textContent = `Run ${this.info.roles.runs.join(", ")} on the server`;
    $("session-note").textContent = this.info ? "Sessions pair through this server." :
      "Static site: Host shows a code to send to the other page, and Join asks for it.";
  }

  // A pattern was loaded: one checkbox per role, "this page runs" (all by default).
  setPattern(links) {
    if (this.peer) this.leave("the pattern changed");
    this.links = links;
    const box = $("session-roles");
    box.replaceChildren(el("span", "this page runs: ", { className: "muted" }));
    for (const name of links.pattern.agents) {
      const lab = el("label", null, { className: "check" });
      lab.append(el("input", null, { type: "checkbox", checked: true, value: name, id: `here-${name}` }), ` ${name}`);
      box.append(lab);
    }
  }

  localRoles() {
    if (!this.links) return [];
    return this.links.pattern.agents.filter((n) => $(`here-${n}`)?.checked);
  }

  remoteRoles() { return this.peer ? [...this.peer.remote] : []; }

  async connect(kind, { room, weights }) {
    if (!this.links) throw new Error("load a pattern first");
    if (this.peer) this.leave();
    let local = this.localRoles();
    if (kind === "server") local = this.links.pattern.agents.filter((n) => !this.info.roles.runs.includes(n));
    if (!local.length || local.length === this.links.pattern.agents.length) {
      throw new Error("tick the roles this page runs: some, not all (the other machine runs the rest)");
    }
    const opts = { links: this.links, localRoles: local, weights: await weights(local), dtype: $("session-dtype").value };
    this.status(`connecting (${kind})...`);
    if (kind === "server") {
      this.peer = await Peer.connectWebSocket(this.info.roles.url, opts);
      this.starts = true;
    } else {
      const signal = this.info ? await signalRelay(`${this.info.signal}${encodeURIComponent(room || "playground")}`)
        : this.pasteSignal();
      const channel = await (kind === "host" ? hostChannel : joinChannel)(signal);
      signal.close?.();
      this.peer = new Peer(channel, opts);
      await this.peer.hello();
      this.starts = kind === "host";
    }
    for (const n of this.links.pattern.agents) $(`here-${n}`).checked = local.includes(n);
    this.peer.onWire = (rec) => this.diagram.wire(rec);
    const port = this.peer.port;
    const closed = port.onclose;
    port.onclose = () => { closed(); if (this.peer?.port === port) this.leave("the other side left"); };
    for (const n of this.peer.remote) this.diagram.setRemote(n, true);
    this.status(`connected: this page runs ${local.join(", ")}; ${[...this.peer.remote].join(", ")} run on the ` +
      `other machine${this.starts ? "" : " (it starts the runs)"}`);
    if (!this.starts) this.serveRuns();
    return this.peer;
  }

  // A joiner: run this page's roles of each question the other page starts.
  async serveRuns() {
    const peer = this.peer;
    while (this.peer === peer) {
      let job;
      try {
        job = await peer.expect("run", [...peer.remote].join(", "), 24 * 3600 * 1000);
      } catch (e) {
        if (this.peer === peer) this.leave(e.message);
        return;
      }
      await this.onRunRequest(job).catch((e) => this.onError(e));
    }
  }

  // Before this page's latent run: tell the other side, when this page starts runs.
  announce(question, opts) {
    if (this.peer && this.starts) {
      this.peer.sendJSON({ type: "run", question, rounds: opts.rounds, m: opts.m, max_new_tokens: opts.maxNewTokens });
    }
  }

  leave(why = "left") {
    const peer = this.peer;
    this.peer = null;
    peer?.close();
    for (const n of this.links?.pattern.agents ?? []) this.diagram.setRemote(n, false);
    this.status(`not connected (${why}): every role runs in this page`);
  }

  status(text) { $("session-status").textContent = text; }

  // Copy-paste signaling: this page's code goes into #session-out, the other page's is pasted into #session-in.
  pasteSignal() {
    $("session-paste").hidden = false;
    return pasteSignal((code) => {
      $("session-out").value = code;
      $("session-out").select();
      navigator.clipboard?.writeText(code).catch(() => {});
      this.status("copy this code to the other page, then paste its code below and press Use code");
    }, () => new Promise((resolve) => {
      $("session-use").onclick = () => resolve($("session-in").value);
    }));
  }
}

// The session card's buttons; `weights(roles)` gives this page's builds' weights sha256 by role.
export function bindSession(session, { guard, weights }) {
  const room = () => $("session-room").value.trim();
  $("session-server").onclick = guard(() => session.connect("server", { weights }).then(() => null));
  $("session-host").onclick = guard(() => session.connect("host", { room: room(), weights }).then(() => null));
  $("session-join").onclick = guard(() => session.connect("join", { room: room(), weights }).then(() => null));
  $("session-leave").onclick = () => session.leave();
}
