// A WebRTC data channel between two pages, for hand-offs between browsers (mas/peer.js runs over it as over a
// WebSocket). Signaling is one offer and one answer, each a complete SDP (ICE gathered first, no trickle), so it
// fits a relay (`mlcbuild serve`'s /signal/ROOM, signalRelay below) or copy-paste between two people (pasteSignal).
// A connection that fails or disconnects closes the channel, so the run on top ends at once instead of waiting for
// the stall time-out.
import { PeerError } from "./errors.js";

const GATHER_MS = 5000; // ICE gathering on loopback or a LAN takes well under a second
const OPEN_MS = 20000;

async function gathered(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_MS); // what was gathered by then is enough for host candidates
  });
}

function opened(channel, pc) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new PeerError("the other page did not connect within 20 s",
      "check that both pages use the same session, and that WebRTC is allowed between them")), OPEN_MS);
    const ready = () => { clearTimeout(timer); resolve(channel); };
    if (channel.readyState === "open") ready();
    else channel.addEventListener("open", ready, { once: true });
    pc.addEventListener("connectionstatechange", () => {
      if (["failed", "closed"].includes(pc.connectionState) && channel.readyState !== "open") {
        clearTimeout(timer);
        reject(new PeerError(`the WebRTC connection ${pc.connectionState}`, "both pages must reach each other"));
      }
    });
  });
}

// The other page leaving shows up as the channel closing, or the connection failing: either closes the channel.
function watch(pc, channel) {
  channel.binaryType = "arraybuffer";
  pc.addEventListener("connectionstatechange", () => {
    if (["disconnected", "failed", "closed"].includes(pc.connectionState)) {
      try { channel.close(); } catch { /* already closed */ }
      if (channel.onclose) channel.onclose(); // a failed connection may not fire close on the channel itself
    }
  });
  const close = channel.close.bind(channel);
  // the channel's close flushes what was sent before it; closing the connection at once could drop that
  channel.close = () => { close(); setTimeout(() => pc.close(), 1000); };
  return channel;
}

// signal: {send(object), recv(): Promise<object>}. Returns an open RTCDataChannel.
export async function hostChannel(signal, config = {}) {
  const pc = new RTCPeerConnection(config);
  const channel = pc.createDataChannel("mlcbuild-handoffs", { ordered: true });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  signal.send({ type: "offer", sdp: pc.localDescription.sdp });
  const answer = await signal.recv();
  if (answer?.type !== "answer") throw new PeerError("the other page did not answer the WebRTC offer");
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  return watch(pc, await opened(channel, pc));
}

export async function joinChannel(signal, config = {}) {
  const pc = new RTCPeerConnection(config);
  const incoming = new Promise((resolve) => { pc.ondatachannel = (ev) => resolve(ev.channel); });
  const offer = await signal.recv();
  if (offer?.type !== "offer") throw new PeerError("the other page sent no WebRTC offer");
  await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  signal.send({ type: "answer", sdp: pc.localDescription.sdp });
  return watch(pc, await opened(await incoming, pc));
}

// Signaling through a WebSocket relay that pairs two pages (mlcbuild serve: ws://HOST:PORT/signal/ROOM).
export async function signalRelay(url) {
  const ws = new WebSocket(url);
  const inbox = [];
  const waiters = [];
  let closed = false;
  ws.onmessage = (ev) => { const w = waiters.shift(); if (w) w.resolve(JSON.parse(ev.data)); else inbox.push(JSON.parse(ev.data)); };
  ws.onclose = (ev) => {
    closed = ev.reason || "the signaling server closed the connection";
    for (const w of waiters.splice(0)) w.reject(new PeerError(`signaling: ${closed}`, "open the session again"));
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new PeerError(`cannot reach the signaling server ${url}`, "is `mlcbuild serve` running?"));
  });
  return {
    send: (msg) => ws.send(JSON.stringify(msg)),
    recv: () => (inbox.length ? Promise.resolve(inbox.shift()) : closed
      ? Promise.reject(new PeerError(`signaling: ${closed}`, "open the session again"))
      : new Promise((resolve, reject) => waiters.push({ resolve, reject }))),
    close: () => ws.close(),
  };
}

// Copy-paste signaling for static hosting: show(text) puts this page's offer or answer where a person can copy
// it, ask() resolves with what they pasted from the other page. The text is the SDP message as base64 JSON.
export function pasteSignal(show, ask) {
  return {
    send: (msg) => show(btoa(JSON.stringify(msg))),
    recv: async () => {
      const text = (await ask()).trim();
      try {
        return JSON.parse(atob(text));
      } catch {
        throw new PeerError("the pasted text is not a session code from another mlcbuild page", "copy it again");
      }
    },
  };
}
