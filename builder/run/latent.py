"""The RecursiveMAS loop on compiled libraries (the Python reference of the browser playground).

Same algorithm as train_links.system.run_latent, but every model call goes through a build's CPU library
(builder.engine.Engine): prompts are embedded with `embed`, latent thoughts are `decode_last_hidden` steps fed
with the inner link's output (no LM head, no sampling), hand-offs go through the outer links, and only the
final agent of the final round decodes text. The text-MAS baseline runs the same agents, prompts and rounds,
passing decoded text instead. Links are the PyTorch modules of train_links, loaded from recursivelink.json.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mlcbuild_common.errors import MlcbuildError

from .engine import Engine
from .wire import frame_size

TEXT_TOKENS = 256  # the text baseline's cap per message: agents write until their turn ends, as a text MAS does


def merge_slot(slots: dict, slot: str, val) -> None:
    """Put a hand-off into a receiver's slot; a second edge into the same slot appends (text on a new line)."""
    old = slots.get(slot)
    slots[slot] = val if old is None else (old + "\n" + val if isinstance(val, str) else np.concatenate([old, val], 0))


@dataclass
class Metrics:
    prompt_tokens: int = 0  # positions prefilled (text tokens and spliced latent rows)
    reused_tokens: int = 0  # prompt positions whose KV entries were kept from the agent's previous round
    generated_tokens: int = 0  # decoded text tokens (sampling, detokenization)
    latent_steps: int = 0  # decode_last_hidden steps
    stages: list = field(default_factory=list)  # per agent per round: {agent, round, stage, ms, ...}
    e2e_ms: float = 0.0
    handoff_bytes: int = 0  # what the hand-offs would weigh between machines: f32 frames, or the messages' UTF-8

    def as_dict(self) -> dict:
        prefill_ms = sum(s["ms"] for s in self.stages if s["stage"] == "prefill")
        decode_ms = sum(s["ms"] for s in self.stages if s["stage"] == "decode")
        return {"prompt_tokens": self.prompt_tokens, "reused_tokens": self.reused_tokens,
                "generated_tokens": self.generated_tokens,
                "latent_steps": self.latent_steps, "e2e_latency_s": self.e2e_ms / 1000,
                "handoff_bytes": self.handoff_bytes,
                "prefill_tokens_per_s": self.prompt_tokens / (prefill_ms / 1000) if prefill_ms else None,
                "decode_tokens_per_s": self.generated_tokens / (decode_ms / 1000) if decode_ms else None,
                "stages": self.stages}


class Agent:
    """One role on one compiled model: prompt pieces from the build's tokenizer and chat template."""

    def __init__(self, name: str, role, engine: Engine):
        from train_links.agents import split_prompt

        self.name, self.role, self.engine = name, role, engine
        self.tokenizer = engine.tokenizer()
        self.pieces, self.turn_end = split_prompt(self.tokenizer, role, name)
        end = self.tokenizer(self.turn_end, add_special_tokens=False)["input_ids"][:1] if self.turn_end else []
        self.stop = set(end) | engine.stop_ids()
        self.seq = engine.sequence()  # this agent's own KV cache, kept across rounds
        self.cached_question = None  # the question whose prompt prefix `seq` holds

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt(self, question: str, slots: dict) -> tuple[np.ndarray, int]:
        """([L, d] float32 prompt embeddings with latent blocks (or re-tokenized text) at their slots, the number
        of leading rows before the first slot: the prefix that is the same in every round of one question)."""
        parts, prefix = [], None
        for kind, val in self.pieces:
            if kind == "slot" and prefix is None:
                prefix = sum(len(x) for x in parts)
            if kind == "text":
                ids = val.tolist()
            elif kind == "field":
                ids = self.encode(question)
            else:
                v = slots.get(val)
                if v is None:
                    continue
                if not isinstance(v, str):
                    parts.append(np.asarray(v, dtype=np.float32))
                    continue
                ids = self.encode(v)
            if ids:
                parts.append(self.engine.embed(ids).astype(np.float32))
        emb = np.concatenate(parts, 0)
        return emb, min(len(emb) if prefix is None else prefix, len(emb) - 1)

    def start(self, question: str, emb: np.ndarray, prefix: int, reuse: bool) -> np.ndarray:
        """Point the sequence at the end of this prompt's shared prefix; returns the rows still to prefill.
        The prefix's KV entries from an earlier round are valid: causal attention never saw what followed."""
        if reuse and self.cached_question == question and self.seq.length >= prefix:
            self.seq.truncate(prefix)
            return emb[prefix:]
        self.seq.reset()
        self.cached_question = question
        return emb


class LatentMAS:
    def __init__(self, build_dirs: list[Path], links_file: Path, max_seq_len: int = 1024, reuse_kv: bool = True,
                 force_links: bool = False, warn=None, roles: dict | None = None):
        """`roles`: a roles document (builder.run.roles.load, the playground's export) replacing the trained
        prompt templates of some roles; the links and the graph stay. A None build folder: that role runs on
        another machine (run(..., peer=...)), nothing of it loads here."""
        self.reuse_kv = reuse_kv
        from train_links import format as fmt
        from train_links.links import make_link

        self.lf = fmt.load(links_file)
        self.pattern = self.lf.pattern
        if roles:  # before any model loads: a bad template is the user's to fix, and cheap to report
            from .roles import apply

            self.pattern = apply(self.pattern, roles)
        engines: dict[str, Engine] = {}
        for d in build_dirs:
            key = str(Path(d).resolve()) if d is not None else None
            if key and key not in engines:
                engines[key] = Engine(Path(d), max_seq_len=max_seq_len)
        dims = {}
        if len(build_dirs) != len(self.pattern.agents):
            raise MlcbuildError(f"{links_file}: pattern {self.pattern.name} has agents {self.pattern.agents}, "
                                f"got {len(build_dirs)} build folder(s)", "pass one build folder per agent, in order")
        self.agents = {}
        for name, d in zip(self.pattern.agents, build_dirs, strict=True):
            if d is None:  # a role another machine runs (builder.run.peer): no model here
                continue
            eng = engines[str(Path(d).resolve())]
            dims[name] = eng.hidden_size
            self.agents[name] = Agent(name, self.pattern.role(name), eng)
        fmt.check_dims(self.lf, dims, links_file)  # against the loaded models' hidden sizes
        self._check_weights(links_file, build_dirs, force_links, warn)
        self.links = {}
        for meta in self.lf.meta["agents"]:
            link = make_link("inner", meta["hidden_size"], meta["hidden_size"],
                             self.lf.tensors[f"inner:{meta['name']}"]["w1.weight"].shape[0])
            link.load_state_dict(self.lf.tensors[f"inner:{meta['name']}"])
            self.links[f"inner:{meta['name']}"] = link.eval()
        sizes = {a["name"]: a["hidden_size"] for a in self.lf.meta["agents"]}
        for e in self.pattern.edges:
            t = self.lf.tensors[e.key]
            link = make_link("outer", sizes[e.src], sizes[e.dst], t["w1.weight"].shape[0])
            link.load_state_dict(t)
            self.links[e.key] = link.eval()
        self.rounds = self.lf.meta["rounds"]
        self.m = self.lf.meta["latent_steps"]

    def _check_weights(self, links_file, build_dirs, force: bool, warn) -> None:
        """Links trained on other weights than a build's would run and answer nonsense: refuse them (or warn)."""
        for meta, d in zip(self.lf.meta["agents"], build_dirs, strict=True):
            if d is None:
                continue
            want = meta.get("weights_sha256")
            have = self.agents[meta["name"]].engine.manifest.get("source", {}).get("sha256")
            if want and have and want != have:
                msg = (f"{links_file}: agent {meta['name']} was trained on {meta.get('model_id') or 'other weights'} "
                       f"(weights {want[:12]}), but {d} holds weights {have[:12]}")
                if not force:
                    raise MlcbuildError(msg, "use links trained for these builds, or pass --force-links")
                if warn:
                    warn(f"warning: {msg}; running anyway (--force-links)")

    def _link(self, key: str, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.links[key](torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def _stage(self, mt: Metrics, agent: str, rnd: int, stage: str, t0: float, **extra):
        mt.stages.append({"agent": agent, "round": rnd, "stage": stage,
                          "ms": (time.perf_counter() - t0) * 1000, **extra})

    def _feed(self, agent: Agent, question: str, emb: np.ndarray, prefix: int, mt: Metrics) -> np.ndarray:
        new = agent.start(question, emb, prefix, self.reuse_kv)
        mt.prompt_tokens += len(new)
        mt.reused_tokens += len(emb) - len(new)
        return new

    def _prefill(self, agent: Agent, question: str, emb, prefix: int, mt: Metrics, rnd: int) -> np.ndarray:
        t0 = time.perf_counter()
        new = self._feed(agent, question, emb, prefix, mt)
        h = agent.seq.hidden(new)
        self._stage(mt, agent.name, rnd, "prefill", t0, tokens=len(new), reused=len(emb) - len(new))
        return h[-1]

    def _decode_text(self, agent: Agent, question: str, emb, prefix: int, max_new: int, mt: Metrics,
                     rnd: int) -> str:
        seq = agent.seq
        t0 = time.perf_counter()
        new = self._feed(agent, question, emb, prefix, mt)
        logits = seq.prefill(new)
        self._stage(mt, agent.name, rnd, "prefill", t0, tokens=len(new), reused=len(emb) - len(new))
        t0 = time.perf_counter()
        ids = []
        for _ in range(max_new):
            nxt = int(np.argmax(logits))
            if nxt in agent.stop:
                break
            ids.append(nxt)
            logits = seq.decode(agent.engine.embed([nxt])[0])
        mt.generated_tokens += len(ids)
        text = agent.tokenizer.decode(ids, skip_special_tokens=True)
        self._stage(mt, agent.name, rnd, "decode", t0, tokens=len(ids))
        return text

    def run(self, question: str, mode: str = "latent", max_new_tokens: int = 32, text_tokens: int | None = None,
            rounds: int | None = None, m: int | None = None, senders_question: str | None = None,
            zero_handoffs: bool = False, slot_prompt=None, peer=None) -> dict:
        """mode "latent": latent hand-offs; "text": each agent writes its message until its turn ends, at most
        `text_tokens` tokens (default TEXT_TOKENS, a full message; pass m for an equal-budget comparison);
        "single": the final agent alone, its slots left empty (the one-agent baseline), or with `slot_prompt`'s
        trained vectors in its slot (train_links.prompt_tuning.SlotPrompt: the prompt-tuned baseline).
        Controls of the latent MAS: `senders_question`, every agent but the final one works on this other
        question, so the final agent gets hand-offs of the right form with the wrong content; `zero_handoffs`,
        every hand-off is replaced by zeros of its shape (the receivers get no content at all).
        `peer` (builder.run.peer.Peer, latent mode): the roles in peer.remote run on another machine; their
        hand-offs to this side's roles come as checked frames, and this side's to theirs go out as frames."""
        # A link is a few small matmuls: one torch thread for the whole run. With torch's default pool its idle
        # workers keep spinning on the cores TVM's pool needs for the next step (measured under load: 32 -> 24 ms).
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run(question, mode, max_new_tokens, text_tokens, rounds, m, senders_question, zero_handoffs,
                             slot_prompt, peer)
        finally:
            torch.set_num_threads(prev)

    def _run(self, question, mode, max_new_tokens, text_tokens, rounds, m, senders_question=None,
             zero_handoffs=False, slot_prompt=None, peer=None) -> dict:
        rounds, m = rounds or self.rounds, m or self.m
        mt, p = Metrics(), self.pattern
        remote = peer.remote if peer else set()
        if peer:
            if mode != "latent":
                raise MlcbuildError(f"a run split between machines is latent only, not {mode}", "use --mode latent")
            peer.begin(rounds, m)
        for agent in self.agents.values():
            agent.cached_question = None  # every run starts cold, so latent and text runs compare fairly
        handoffs = []
        t_start = time.perf_counter()
        prev: dict = {}
        answer = None
        if mode == "single":
            agent = self.agents[p.final]
            emb, prefix = agent.prompt(question, slot_prompt.slots if slot_prompt else {})
            answer = self._decode_text(agent, question, emb, prefix, max_new_tokens, mt, 0)
            rounds = 0
        for r in range(rounds):
            cur: dict = {}
            for name in p.order():
                if name in remote:
                    continue
                agent = self.agents[name]
                q = senders_question if senders_question and name != p.final else question
                slots: dict = {}
                for e in p.incoming(name):
                    if e.src in remote:
                        src = None if e.next_round and r == 0 else peer.receive(e, r)
                    else:
                        src = prev.get(e.src) if e.next_round else cur.get(e.src)
                    if src is None:
                        continue
                    val = src if e.src in remote else self._link(e.key, src) if mode == "latent" else src
                    if zero_handoffs and mode == "latent":
                        val = np.zeros_like(val)
                    if mode == "latent":
                        handoffs.append({"edge": e.key, "round": r, "block": val})
                        mt.handoff_bytes += frame_size(e.key, *val.shape, peer.dtype if peer else "f32")
                    elif isinstance(val, str):
                        mt.handoff_bytes += len(val.encode())
                    merge_slot(slots, e.slot, val)
                emb, prefix = agent.prompt(q, slots)
                if r == rounds - 1 and name == p.final:
                    answer = self._decode_text(agent, q, emb, prefix, max_new_tokens, mt, r)
                    break
                if mode == "latent":
                    h = self._prefill(agent, q, emb, prefix, mt, r)
                    t0 = time.perf_counter()
                    block = []
                    for _ in range(m):
                        h = agent.seq.decode_hidden(self._link(f"inner:{name}", h[None])[0])
                        block.append(h)
                    mt.latent_steps += m
                    self._stage(mt, name, r, "latent", t0, steps=m)
                    cur[name] = np.stack(block)
                    for e in p.edges:  # this side's hand-offs to the other machine's roles, after their links
                        if e.src == name and e.dst in remote and (not e.next_round or r + 1 < rounds):
                            peer.send(e, r + 1 if e.next_round else r, self._link(e.key, cur[name]))
                else:
                    cur[name] = self._decode_text(agent, q, emb, prefix, text_tokens or TEXT_TOKENS, mt, r)
            prev = cur
        if peer and p.final in remote:
            answer = peer.expect("answer", p.final)["text"]
        elif peer:
            peer.send_json(type="answer", text=answer)
        mt.e2e_ms = (time.perf_counter() - t_start) * 1000
        out = {"mode": mode, "answer": answer, "metrics": mt.as_dict(), "handoffs": handoffs}
        if peer:
            out["wire"] = peer.wire.summary()
        return out
