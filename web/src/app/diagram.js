// The pattern as a live diagram (inline SVG, no library): one node per agent (name, build, hidden size, status), one
// arrow per edge labelled with its slot, stages left to right, next-round edges dashed and routed back under the
// nodes. During a run it highlights the agent at work, the edges whose hand-off is in flight (from the moment the
// source's block or message is ready until the destination has prefilled it: the loop's "send" and "land" events),
// and shows "round k / r". read() returns what the SVG shows, plus the flights seen, for tests.
// It takes a mas Pattern (agents, stages, edges with key / next_round, final) and imports nothing.

const NS = "http://www.w3.org/2000/svg";
const W = 176; // node size
const H = 66;
const GAP_X = 120; // between stages: room for the slot labels
const GAP_Y = 28;
const PAD = 16;
const TOP = 40; // room for the round indicator
const LANE = 30; // next-round edges run in lanes this far apart under the nodes, their labels below them
const SIDE = 10; // ... and up the left of a node that is not the lowest of its stage
const SPREAD = 12; // several edges on one side of a node start / end this far apart
const WORKING = new Set(["prefill", "latent", "decoding"]);

const STYLE = `
svg.pattern-diagram { max-width: 100%; height: auto; }
.pattern-diagram text { font: 12px system-ui, sans-serif; fill: var(--muted, #555); }
.pattern-diagram .round { font-weight: 600; font-size: 13px; fill: var(--fg, #111); }
.pattern-diagram .node rect { fill: var(--card, #f7f7f7); stroke: var(--muted, #999); stroke-width: 1.2; }
.pattern-diagram .node.final rect { stroke-width: 2.4; }
.pattern-diagram .node.done rect { fill: var(--ok, #eef6ee); }
.pattern-diagram .node.active rect { fill: var(--warn, #fff4d6); stroke: #d97706; stroke-width: 2.8; }
.pattern-diagram .node.failed rect { fill: var(--bad, #fde8e8); stroke: #c33; }
.pattern-diagram .node .name { font-weight: 600; font-size: 13px; fill: var(--fg, #111); }
.pattern-diagram .edge { fill: none; stroke: #888; stroke-width: 1.6; marker-end: url(#diagram-arrow); }
.pattern-diagram .edge.next-round { stroke-dasharray: 6 4; }
.pattern-diagram .edge.carried { stroke: #3d7a4b; }
.pattern-diagram .edge.inflight { stroke: #d97706; stroke-width: 3.2; stroke-dasharray: 8 5;
  marker-end: url(#diagram-arrow-hot); animation: diagram-flow .7s linear infinite; }
@keyframes diagram-flow { to { stroke-dashoffset: -13; } }
.pattern-diagram .slot { fill: var(--fg, #333); paint-order: stroke; stroke: var(--card, #fff);
  stroke-width: 4px; }
.pattern-diagram .slot.inflight { fill: #b45309; font-weight: 600; }
.pattern-diagram .node.remote rect { stroke-dasharray: 5 3; fill: var(--remote, #eef2fb); }
.pattern-diagram .node .where { font-size: 10px; fill: #3b5bab; }
.pattern-diagram .wire { font-size: 10px; fill: #3b5bab; paint-order: stroke; stroke: var(--card, #fff);
  stroke-width: 4px; }
`;

function svgEl(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// A polyline with rounded corners, as a path.
function rounded(points, r = 10) {
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length - 1; i++) {
    const [p, c, n] = [points[i - 1], points[i], points[i + 1]];
    const towards = (a, b, len) => {
      const dist = Math.hypot(b[0] - a[0], b[1] - a[1]) || 1;
      const k = Math.min(len, dist / 2) / dist;
      return [a[0] + (b[0] - a[0]) * k, a[1] + (b[1] - a[1]) * k];
    };
    const [a, b] = [towards(c, p, r), towards(c, n, r)];
    d += ` L${a[0]},${a[1]} Q${c[0]},${c[1]} ${b[0]},${b[1]}`;
  }
  const last = points[points.length - 1];
  return `${d} L${last[0]},${last[1]}`;
}

// Offset of item i of n spread around a side's middle.
const spread = (i, n) => (i - (n - 1) / 2) * SPREAD;

const shortBuild = (b) => {
  const s = String(b ?? "").replace(/\/+$/, "").split("/").pop() || "(no build)";
  return s.length > 26 ? `${s.slice(0, 25)}…` : s;
};

export class Diagram {
  constructor(box) {
    this.box = box;
    this.svg = null;
    this.flights = []; // this run's hand-offs: {edge, round, sent, landed} (event numbers), in the order sent
    this.tick = 0;
  }

  // agents: {name: {build, d}}
  draw(pattern, agents = {}) {
    this.pattern = pattern;
    const stages = pattern.stages;
    const rows = Math.max(...stages.map((s) => s.length));
    const back = pattern.edges.filter((e) => e.next_round);
    const colH = rows * H + (rows - 1) * GAP_Y;
    const left = PAD + SIDE * (back.length + 1); // room for back edges running up the first column's left side
    const pos = {};
    stages.forEach((stage, i) => {
      const h = stage.length * H + (stage.length - 1) * GAP_Y;
      stage.forEach((a, j) => {
        pos[a] = { x: left + i * (W + GAP_X), y: TOP + (colH - h) / 2 + j * (H + GAP_Y), lowest: j === stage.length - 1 };
      });
    });
    const bottom = TOP + colH;
    const width = left + stages.length * W + (stages.length - 1) * GAP_X + PAD;
    const height = bottom + LANE * back.length + PAD;
    const svg = svgEl("svg", { class: "pattern-diagram", width, height, viewBox: `0 0 ${width} ${height}`,
      role: "img", "aria-label": `pattern ${pattern.name}` });
    const defs = svgEl("defs");
    for (const [id, color] of [["diagram-arrow", "#888"], ["diagram-arrow-hot", "#d97706"]]) {
      const m = svgEl("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 11, markerHeight: 11,
        markerUnits: "userSpaceOnUse", // the same head on a thin edge and on a thick, in-flight one
        orient: "auto-start-reverse" });
      m.append(svgEl("path", { d: "M0,0 L10,5 L0,10 z", fill: color }));
      defs.append(m);
    }
    svg.append(svgEl("style", {}, STYLE), defs);
    svg.append(svgEl("text", { class: "round", x: PAD, y: 22 }, "round - / -"),
      svgEl("text", { class: "mode", x: PAD + 110, y: 22 }, `pattern ${pattern.name}: not running`));

    const edgeLayer = svgEl("g");
    const labelLayer = svgEl("g");
    const forward = pattern.edges.filter((e) => !e.next_round);
    const outs = (a) => forward.filter((e) => e.src === a);
    const ins = (a) => forward.filter((e) => e.dst === a);
    for (const e of forward) {
      const [s, t] = [pos[e.src], pos[e.dst]];
      const x1 = s.x + W;
      const y1 = s.y + H / 2 + spread(outs(e.src).indexOf(e), outs(e.src).length);
      const x2 = t.x;
      const y2 = t.y + H / 2 + spread(ins(e.dst).indexOf(e), ins(e.dst).length);
      const dx = (x2 - x1) / 2;
      this.#edge(edgeLayer, labelLayer, e, `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`,
        (x1 + x2) / 2, (y1 + y2) / 2 - 6, e.slot);
    }
    // next-round edges: down from the source, along their own lane under the nodes, up into the destination
    // (from below when it is the lowest of its stage, else up its left side and in)
    back.forEach((e, lane) => {
      const [s, t] = [pos[e.src], pos[e.dst]];
      const laneY = bottom + 14 + LANE * lane;
      const mine = back.filter((x) => x.src === e.src);
      const theirs = back.filter((x) => x.dst === e.dst);
      const pts = [];
      if (s.lowest) {
        const x = s.x + W / 2 + spread(mine.indexOf(e), mine.length);
        pts.push([x, s.y + H], [x, laneY]);
      } else {
        const x = s.x + W + SIDE * (mine.indexOf(e) + 1);
        pts.push([s.x + W, s.y + H / 2 + 8], [x, s.y + H / 2 + 8], [x, laneY]);
      }
      if (t.lowest) {
        const x = t.x + W / 2 + spread(theirs.indexOf(e), theirs.length) + (e.src === e.dst ? SPREAD * 2 : 0);
        pts.push([x, laneY], [x, t.y + H]);
      } else {
        const x = t.x - SIDE * (lane + 1);
        pts.push([x, laneY], [x, t.y + H / 2 + 8], [t.x, t.y + H / 2 + 8]);
      }
      const run = pts.filter((q) => q[1] === laneY); // the lane segment carries the label
      const mid = (run[0][0] + run[run.length - 1][0]) / 2;
      this.#edge(edgeLayer, labelLayer, e, rounded(pts), mid, laneY + 14, `${e.slot} (next round)`);
    });

    const nodeLayer = svgEl("g");
    for (const a of pattern.agents) {
      const p = pos[a];
      const g = svgEl("g", { class: `node${a === pattern.final ? " final" : ""}`, "data-agent": a,
        "data-d": agents[a]?.d ?? "", transform: `translate(${p.x},${p.y})` });
      const tip = svgEl("title", {}, agents[a]?.build ?? "");
      g.append(tip, svgEl("rect", { width: W, height: H, rx: 7 }),
        svgEl("text", { class: "name", x: 10, y: 19 }, a),
        svgEl("text", { x: W - 10, y: 19, "text-anchor": "end" }, a === pattern.final ? "answers" : ""),
        svgEl("text", { class: "build", x: 10, y: 37 }, shortBuild(agents[a]?.build)),
        svgEl("text", { class: "dim", x: 10, y: 55 }, `d=${agents[a]?.d ?? "?"}`),
        svgEl("text", { class: "status", x: W - 10, y: 55, "text-anchor": "end" }, "idle"),
        svgEl("text", { class: "where", x: W - 10, y: 37, "text-anchor": "end" }, ""));
      nodeLayer.append(g);
    }
    svg.append(edgeLayer, nodeLayer, labelLayer);
    this.box.replaceChildren(svg);
    this.svg = svg;
    this.flights = [];
  }

  #edge(edges, labels, e, d, lx, ly, text) {
    edges.append(svgEl("path", { class: `edge${e.next_round ? " next-round" : ""}`, d, "data-edge": e.key,
      "data-carried": 0 }));
    labels.append(svgEl("text", { class: "slot", x: lx, y: ly, "text-anchor": "middle", "data-edge": e.key }, text),
      svgEl("text", { class: "wire", x: lx, y: ly + 13, "text-anchor": "middle", "data-edge": e.key }, ""));
  }

  // A role that runs on the other machine of a split run (app/session.js): dashed, marked "remote".
  setRemote(name, on) {
    const g = this.#node(name);
    if (!g) return;
    g.classList.toggle("remote", on);
    g.querySelector(".where").textContent = on ? "remote" : "";
  }

  // A hand-off frame that crossed the wire (mas/peer.js record): its size and time under the edge's label.
  wire(rec) {
    const t = this.svg?.querySelector(`text.wire[data-edge="${CSS.escape(rec.edge)}"]`);
    if (!t) return;
    const kb = rec.bytes >= 1024 ? `${(rec.bytes / 1024).toFixed(1)} KB` : `${rec.bytes} B`;
    t.textContent = `${kb} on the wire, ${rec.ms.toFixed(rec.ms < 10 ? 1 : 0)} ms`;
    (this.wires ??= []).push({ ...rec });
  }

  #node(name) { return this.svg?.querySelector(`g.node[data-agent="${CSS.escape(name)}"]`); }

  #edgeEls(key) { return this.svg ? [...this.svg.querySelectorAll(`[data-edge="${CSS.escape(key)}"]`)] : []; }

  setBuild(name, build) {
    const g = this.#node(name);
    if (!g) return;
    g.querySelector(".build").textContent = shortBuild(build);
    g.querySelector("title").textContent = build;
  }

  setStatus(name, status) {
    const g = this.#node(name);
    if (!g) return;
    g.querySelector(".status").textContent = status;
    g.classList.toggle("active", WORKING.has(status));
    g.classList.toggle("done", status === "done");
    g.classList.toggle("failed", status === "failed");
  }

  // A run of `mode` starts: no edge carried or in flight yet.
  begin(mode) {
    if (!this.svg) return;
    this.mode = mode;
    this.flights = [];
    for (const p of this.svg.querySelectorAll("path.edge")) {
      p.dataset.carried = "0";
      p.classList.remove("carried");
    }
    for (const t of this.svg.querySelectorAll("text.wire")) t.textContent = "";
    this.wires = [];
    this.#clearFlights();
    this.svg.querySelector(".mode").textContent = `${mode}: starting`;
  }

  // The loop's onEvent: round, send (a hand-off leaves its source), land (its destination has prefilled it).
  event(ev) {
    if (!this.svg) return;
    this.tick += 1;
    if (ev.type === "round") {
      this.svg.querySelector(".round").textContent = `round ${ev.round + 1} / ${ev.rounds}`;
      this.svg.querySelector(".mode").textContent = `${this.mode}: running`;
    } else if (ev.type === "send") {
      this.flights.push({ edge: ev.edge, round: ev.round, sent: this.tick, landed: null });
      for (const x of this.#edgeEls(ev.edge)) x.classList.add("inflight");
    } else if (ev.type === "land") {
      const f = this.flights.find((x) => x.edge === ev.edge && x.round === ev.round && x.landed === null);
      if (f) f.landed = this.tick;
      else this.flights.push({ edge: ev.edge, round: ev.round, sent: null, landed: this.tick }); // shows the bug
      const still = this.flights.some((x) => x.edge === ev.edge && x.landed === null);
      for (const x of this.#edgeEls(ev.edge)) {
        x.classList.toggle("inflight", still);
        if (x.tagName === "path") {
          x.dataset.carried = String(Number(x.dataset.carried) + 1);
          x.classList.add("carried");
        }
      }
    }
  }

  // The run ended (or failed): nothing is in flight any more.
  end(outcome = "done") {
    if (!this.svg) return;
    this.#clearFlights();
    this.svg.querySelector(".mode").textContent = this.mode ? `${this.mode}: ${outcome}` : outcome; // failed early
  }

  #clearFlights() {
    for (const x of this.svg.querySelectorAll(".inflight")) x.classList.remove("inflight");
  }

  // What the SVG shows, read back from its DOM, and this run's flights.
  read() {
    if (!this.svg) return null;
    const all = (sel) => [...this.svg.querySelectorAll(sel)];
    const label = (key) => all("text.slot").find((t) => t.dataset.edge === key)?.textContent;
    return {
      nodes: all("g.node").map((g) => ({ agent: g.dataset.agent, build: g.querySelector(".build").textContent,
        d: Number(g.dataset.d), status: g.querySelector(".status").textContent, active: g.classList.contains("active"),
        final: g.classList.contains("final"), remote: g.classList.contains("remote") })),
      edges: all("path.edge").map((p) => ({ edge: p.dataset.edge, label: label(p.dataset.edge),
        next_round: p.classList.contains("next-round"), dashed: getComputedStyle(p).strokeDasharray !== "none",
        carried: Number(p.dataset.carried) })),
      round: this.svg.querySelector(".round").textContent,
      mode: this.svg.querySelector(".mode").textContent,
      inflight: all("path.edge.inflight").map((p) => p.dataset.edge),
      flights: this.flights.map((f) => ({ ...f })),
      wire: all("text.wire").filter((t) => t.textContent).map((t) => ({ edge: t.dataset.edge, label: t.textContent })),
      wires: (this.wires ?? []).map((w) => ({ ...w })),
    };
  }
}
