// The other side of a split run: roles on another machine (a Python `mlcbuild serve --run-roles ...` over a
// WebSocket, or another page over a WebRTC data channel), as builder/run/peer.py on the Python side.
//
// Both sides run the same loop (loop.js, opts.peer); each runs its own roles and skips the others. A hand-off to a
// remote role goes out as a frame (wire.js) after its outer link; a hand-off from one is awaited, checked and only
// then spliced into a prompt. JSON text messages carry the rest: hello (roles, links), run (question, settings),
// answer (from the side with the final agent), done, error. A side that leaves, stalls or sends a refused frame
// ends the run with a PeerError naming the role whose hand-off was awaited: no page hangs.
//
// `port` is anything with send(string | ArrayBuffer), close() and onmessage / onclose: a WebSocket or an
// RTCDataChannel (both with binaryType "arraybuffer").
import { PeerError } from "../runtime/errors.js";
import { decodeFrame, encodeFrame } from "./wire.js";

export const PROTOCOL = "mlcbuild-handoff/1";
const now = () => performance.now();
const names = (set) => [...set].sort().join(", ") || "no role";

export class Peer {
  // links: a LinkSet (loadLinks) with its file's sha256 in links.sha256; localRoles: the roles this side runs;
  // weights: {role: weights sha256 of this side's build}; dtype: "f32" | "f16" frames
  constructor(port, { links, localRoles, weights = {}, dtype = "f32", timeoutMs = 120000 }) {
    Object.assign(this, { port, links, dtype, timeoutMs, weights });
    this.local = new Set(localRoles);
    this.remote = new Set(links.pattern.agents.filter((a) => !this.local.has(a)));
    this.recorded = Object.fromEntries(Object.entries(links.agents).map(([n, a]) => [n, a.weights_sha256 || ""]));
    this.dims = Object.fromEntries(Object.entries(links.agents).map(([n, a]) => [n, a.hidden_size]));
    this.texts = [];
    this.inbox = new Map();
    this.seq = 0;
    this.closed = false;
    this.failure = null;
    this.wakers = new Set();
    this.onWire = () => {}; // (frame record) for the page: bytes and time of each hand-off on the wire
    this.newRun({}); // frames are checked against the links' r and m until a run says otherwise
    port.binaryType = "arraybuffer";
    port.onmessage = (ev) => this._arrive(ev.data);
    port.onclose = () => { this.closed = true; this._wake(); };
  }

  // Open a WebSocket to `url` and say hello.
  static async connectWebSocket(url, opts) {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new PeerError(`cannot connect to ${url}`, "is `mlcbuild serve --run-roles ...` running?"));
    });
    const peer = new Peer(ws, opts);
    await peer.hello();
    return peer;
  }

  _wake() { for (const w of this.wakers) w(); this.wakers.clear(); }

  _fail(err, tell = true) {
    if (tell) this.sendJSON({ type: "error", message: err.message });
    this.failure = this.failure ?? err;
    this._wake();
  }

  _arrive(data) {
    if (typeof data === "string") {
      let doc;
      try { doc = JSON.parse(data); } catch {
        this._fail(new PeerError("the peer sent a message that is not JSON", "connect to an mlcbuild peer"));
        return;
      }
      if (doc.type === "bye") { // the other side is leaving: as good as closed, without waiting for the transport
        this.closed = true;
      } else if (doc.type === "error") {
        this._fail(new PeerError(`the peer stopped: ${String(doc.message).slice(0, 300)}`, "see the other side"), false);
      } else {
        if (doc.type === "run") this.newRun(doc); // its frames follow it on the ordered channel
        this.texts.push(doc);
      }
    } else {
      this._keep(new Uint8Array(data));
    }
    this._wake();
  }

  _expected() {
    const out = {};
    for (const e of this.links.pattern.edges) {
      if (this.remote.has(e.src) && this.local.has(e.dst)) out[e.key] = [this.m, this.dims[e.dst]];
    }
    return out;
  }

  _keep(bytes) {
    let f;
    try {
      f = decodeFrame(bytes, { linksSha256: this.links.sha256, weights: this.recorded, expect: this._expected() });
    } catch (e) {
      this._fail(e.name === "HandoffFrameError" ? e : new PeerError(String(e.message || e)));
      return;
    }
    const key = `${f.edge}@${f.round}`;
    if (f.round >= this.rounds || this.inbox.has(key)) {
      this._fail(new PeerError(`hand-off frame refused: edge ${f.edge} round ${f.round} is not awaited`));
      return;
    }
    this.inbox.set(key, { frame: f, at: now() });
  }

  sendJSON(msg) {
    if (this.closed) return;
    if (msg.type === "run") this.newRun(msg);
    try { this.port.send(JSON.stringify(msg)); } catch { /* closing: the other side sees the close */ }
  }

  // Wait until check() gives a value; `role` names who we wait for in the errors.
  async _until(check, role, timeoutMs = this.timeoutMs, what = "a hand-off") {
    const deadline = now() + timeoutMs;
    for (;;) {
      if (this.failure) throw this.failure;
      const v = check();
      if (v !== undefined) return v;
      if (this.closed) throw new PeerError(`the peer running ${role} left mid-run`, "start it again and rerun");
      const left = deadline - now();
      if (left <= 0) {
        throw new PeerError(`the peer running ${role} sent ${what === "a hand-off" ? "no hand-off" : `no ${what}`} ` +
          `for ${Math.round(timeoutMs / 1000)} s`, "check the other side; rerun");
      }
      await new Promise((resolve) => {
        this.wakers.add(resolve);
        setTimeout(resolve, Math.min(left, 1000));
      });
    }
  }

  async expect(kind, role, timeoutMs = this.timeoutMs) {
    return this._until(() => {
      const i = this.texts.findIndex((d) => d.type === kind);
      return i < 0 ? undefined : this.texts.splice(i, 1)[0];
    }, role, timeoutMs, kind);
  }

  async hello() {
    this.sendJSON({ type: "hello", protocol: PROTOCOL, roles: [...this.local].sort(), links_sha256: this.links.sha256 });
    const doc = await this.expect("hello", names(this.remote), 30000);
    if (doc.protocol !== PROTOCOL) {
      throw new PeerError(`the peer speaks ${doc.protocol}, this side ${PROTOCOL}`, "run the same mlcbuild version");
    }
    if (doc.links_sha256 !== this.links.sha256) {
      throw new PeerError(`the peer loaded other links (sha256 ${String(doc.links_sha256).slice(0, 12)}, here ` +
        `${this.links.sha256.slice(0, 12)})`, "load the same recursivelink.json on both sides");
    }
    const theirs = new Set(doc.roles || []);
    if (names(theirs) !== names(this.remote)) {
      throw new PeerError(`the peer runs ${names(theirs)}; this side runs ${names(this.local)} and needs ` +
        `${names(this.remote)} from it`, "split the pattern's roles between the two sides");
    }
    return doc;
  }

  // A run starts (this side sent `run`, or received it): no frame of an earlier run counts any more.
  newRun(job) {
    this.rounds = job.rounds || this.links.rounds;
    this.m = job.m || this.links.m;
    this.frames = [];
    this.inbox = new Map();
  }

  // The loop's r and m for this run (frames that came before it started were checked against the same values).
  begin(rounds, m) { Object.assign(this, { rounds, m }); }

  // {data (Float32Array rows*dim), rows, dim} of `edge` in `round`, after its outer link, once checked.
  async receive(edge, round) {
    const t0 = now();
    const key = `${edge.key}@${round}`;
    const got = await this._until(() => this.inbox.get(key), edge.src);
    this.inbox.delete(key);
    const rec = { dir: "received", edge: edge.key, round, bytes: got.frame.bytes, ms: now() - t0, src: edge.src,
      dst: edge.dst };
    this.frames.push(rec);
    this.onWire(rec);
    return got.frame;
  }

  send(edge, round, block) {
    if (this.failure) throw this.failure;
    if (this.closed) throw new PeerError(`the peer running ${edge.dst} left mid-run`, "start it again and rerun");
    const t0 = now();
    const buf = encodeFrame({ src: edge.src, dst: edge.dst, slot: edge.slot, round, seq: this.seq++, data: block.data,
      rows: block.rows, dim: block.dim, linksSha256: this.links.sha256, weightsSha256: this.weights[edge.src] || "",
      dtype: this.dtype });
    try {
      this.port.send(buf.buffer);
    } catch { // the channel is closing under us
      this.closed = true;
      throw new PeerError(`the peer running ${edge.dst} left mid-run`, "start it again and rerun");
    }
    const rec = { dir: "sent", edge: edge.key, round, bytes: buf.length, ms: now() - t0, src: edge.src, dst: edge.dst };
    this.frames.push(rec);
    this.onWire(rec);
  }

  summary() {
    const sum = (d) => this.frames.filter((f) => f.dir === d).reduce((a, f) => a + f.bytes, 0);
    return { frames: this.frames, bytes_sent: sum("sent"), bytes_received: sum("received") };
  }

  // Say bye first: a data channel's close can take the transport's time-outs to reach the other side.
  close() {
    this.sendJSON({ type: "bye" });
    this.closed = true;
    try { this.port.close(); } catch { /* already closed */ }
  }
}
