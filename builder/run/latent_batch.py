"""LatentMAS over several questions at once: the same loop as LatentMAS._run, with each agent's work on every
question stepped together (`mlcbuild eval --batch B`).

Each agent holds one Batch (builder/run/batch.py) of B sequences, row i for question i. The questions' prompts share
forwards where that keeps a lone prompt's bits (Batch.hidden_many); latent steps and text tokens are one forward for
all questions still going. A batched decode row sums in a lone row's order, and links run per question, so every
question gets the outputs `LatentMAS.run` gives it alone (tests/test_batch.py, and the eval test checks every row).
"""

import numpy as np
import torch

from .latent import TEXT_TOKENS, Metrics, merge_slot
from .wire import frame_size


class BatchRunner:
    def __init__(self, mas, size: int):
        self.mas, self.size = mas, size
        self.batches = {name: a.engine.batch(size, a.seq.max_seq_len) for name, a in mas.agents.items()}

    def run(self, questions: list[str], mode: str = "latent", max_new_tokens: int = 32,
            text_tokens: int | None = None, senders: list[str | None] | None = None, zero_handoffs: bool = False,
            slot_prompt=None) -> list[dict]:
        """One result per question, as LatentMAS.run(question, ...) gives it: {"answer", "metrics"}."""
        if len(questions) > self.size:
            raise ValueError(f"{len(questions)} questions for a batch of {self.size}")
        prev = torch.get_num_threads()
        torch.set_num_threads(1)  # as LatentMAS.run: the links are small, TVM's pool needs the cores
        try:
            return self._run(questions, mode, max_new_tokens, text_tokens, senders, zero_handoffs, slot_prompt)
        finally:
            torch.set_num_threads(prev)

    def _run(self, questions, mode, max_new_tokens, text_tokens, senders, zero_handoffs, slot_prompt):
        mas, p, n = self.mas, self.mas.pattern, len(questions)
        rows = range(n)
        mts = [Metrics() for _ in rows]
        cached = {name: [None] * self.size for name in mas.agents}  # the question whose prefix row i holds
        answers = [None] * n
        if mode == "single":
            agent = mas.agents[p.final]
            prompts = [agent.prompt(q, slot_prompt.slots if slot_prompt else {}) for q in questions]
            return self._answers(self._decode(p.final, questions, prompts, max_new_tokens, mts, cached), mts, mode)
        rounds, m = mas.rounds, mas.m
        prev: list[dict] = [{} for _ in rows]
        for r in range(rounds):
            cur: list[dict] = [{} for _ in rows]
            for name in p.order():
                agent = mas.agents[name]
                qs = [senders[i] if senders and senders[i] and name != p.final else questions[i] for i in rows]
                prompts = []
                for i in rows:
                    slots: dict = {}
                    for e in p.incoming(name):
                        src = prev[i].get(e.src) if e.next_round else cur[i].get(e.src)
                        if src is None:
                            continue
                        val = mas._link(e.key, src) if mode == "latent" else src
                        if mode == "latent":
                            val = np.zeros_like(val) if zero_handoffs else val
                            mts[i].handoff_bytes += frame_size(e.key, *val.shape, "f32")
                        else:
                            mts[i].handoff_bytes += len(val.encode())
                        merge_slot(slots, e.slot, val)
                    prompts.append(agent.prompt(qs[i], slots))
                if r == rounds - 1 and name == p.final:
                    answers = self._decode(name, qs, prompts, max_new_tokens, mts, cached)
                    break
                if mode == "latent":
                    blocks = self._think(name, qs, prompts, m, mts, cached)
                    for i in rows:
                        cur[i][name] = blocks[i]
                else:
                    texts = self._decode(name, qs, prompts, text_tokens or TEXT_TOKENS, mts, cached)
                    for i in rows:
                        cur[i][name] = texts[i]
            prev = cur
        return self._answers(answers, mts, mode)

    @staticmethod
    def _answers(answers, mts, mode):
        return [{"mode": mode, "answer": a, "metrics": mt.as_dict()} for a, mt in zip(answers, mts, strict=True)]

    def _feed(self, name: str, i: int, question: str, emb: np.ndarray, prefix: int, mt: Metrics, cached) -> np.ndarray:
        """Agent.start for row i: keep the shared prefix of this question's earlier round, else start empty."""
        batch = self.batches[name]
        if self.mas.reuse_kv and cached[name][i] == question and batch.lengths[i] >= prefix:
            batch.truncate(i, prefix)
            new = emb[prefix:]
        else:
            batch.truncate(i, 0)
            cached[name][i] = question
            new = emb
        mt.prompt_tokens += len(new)
        mt.reused_tokens += len(emb) - len(new)
        return new

    def _think(self, name, qs, prompts, m, mts, cached) -> list[np.ndarray]:
        """Prefill every question's prompt, then m latent steps for all of them together: [m, H] per question."""
        batch, ids = self.batches[name], list(range(len(qs)))
        new = [self._feed(name, i, qs[i], *prompts[i], mts[i], cached) for i in ids]
        h = np.stack([x[-1] for x in batch.hidden_many(ids, new)])
        steps = []
        for _ in range(m):
            x = np.concatenate([self.mas._link(f"inner:{name}", h[i:i + 1]) for i in ids], 0)  # per question
            h = batch.decode_hidden(ids, x)
            steps.append(h)
        for mt in mts:
            mt.latent_steps += m
        block = np.stack(steps, 1)  # [questions, m, H]
        return [block[i] for i in ids]

    def _decode(self, name, qs, prompts, max_new, mts, cached) -> list[str]:
        """Greedy text for every question: the prompts' prefills, then one decode step for all still writing."""
        agent, batch, ids = self.mas.agents[name], self.batches[name], list(range(len(qs)))
        new = [self._feed(name, i, qs[i], *prompts[i], mts[i], cached) for i in ids]
        logits = dict(zip(ids, batch.prefill_many(ids, new), strict=True))
        out = {i: [] for i in logits}
        live = list(logits)
        for _ in range(max_new):
            nxt = {i: int(np.argmax(logits[i])) for i in live}
            live = [i for i in live if nxt[i] not in agent.stop]
            if not live:
                break
            for i in live:
                out[i].append(nxt[i])
            rows = batch.decode(live, agent.engine.embed([nxt[i] for i in live]))
            logits = {i: rows[j] for j, i in enumerate(live)}
        for i, ids in out.items():
            mts[i].generated_tokens += len(ids)
        return [agent.tokenizer.decode(out[i], skip_special_tokens=True) for i in range(len(qs))]
