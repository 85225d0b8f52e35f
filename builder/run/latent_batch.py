"""LatentMAS over several questions at once: the same loop as LatentMAS._run, with each agent's work on every
question stepped together (`mlcbuild eval --batch B`).

Each agent holds one Batch (builder/run/batch.py) of B sequences. The questions' prompts share forwards where that
keeps a lone prompt's bits (Batch.hidden_many); latent steps and text tokens are one forward for all questions still
going. At r = 1 a call takes up to POOL * B questions: each agent's text flows through its B rows, a waiting
question taking a row as soon as half of them are free, so a long writer no longer leaves the other rows idle.
(At r > 1 a question keeps its row from round to round, for the KV prefix reuse, so a call takes at most B.)
A batched decode row sums in a lone row's order, and links run per question, so every question gets the outputs
`LatentMAS.run` gives it alone (tests/test_batch.py, and the eval tests check every row).
"""

import numpy as np
import torch

from .latent import TEXT_TOKENS, Metrics, merge_slot
from .wire import frame_size

POOL = 4  # questions per call at r = 1, in units of B: fewer stage tails with idle rows


class BatchRunner:
    def __init__(self, mas, size: int):
        self.mas, self.size = mas, size
        self.batches = {name: a.engine.batch(size, a.seq.max_seq_len) for name, a in mas.agents.items()}
        self.admit = max(1, size // 2)  # free rows before waiting questions are prefilled into them (together)

    @property
    def capacity(self) -> int:
        """Questions one run() call takes."""
        return self.size * (POOL if self.mas.rounds == 1 else 1)

    def run(self, questions: list[str], mode: str = "latent", max_new_tokens: int = 32,
            text_tokens: int | None = None, senders: list[str | None] | None = None, zero_handoffs: bool = False,
            slot_prompt=None) -> list[dict]:
        """One result per question, as LatentMAS.run(question, ...) gives it: {"answer", "metrics"}."""
        if len(questions) > self.capacity:
            raise ValueError(f"{len(questions)} questions for a runner that takes {self.capacity}")
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
        if self.mas.rounds == 1:
            cached[name][i] = None  # no earlier round; a row that held an equal question must not be reused
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
        """Prefill the questions' prompts, then m latent steps for B of them together: [m, H] per question."""
        batch, blocks = self.batches[name], []
        for at in range(0, len(qs), self.size):  # every question takes m steps: no tail to fill
            qids = list(range(at, min(at + self.size, len(qs))))
            rows = [q - at for q in qids]
            new = [self._feed(name, r, qs[q], *prompts[q], mts[q], cached) for r, q in zip(rows, qids, strict=True)]
            h = np.stack([x[-1] for x in batch.hidden_many(rows, new)])
            steps = []
            for _ in range(m):
                x = np.concatenate([self.mas._link(f"inner:{name}", h[j:j + 1]) for j in range(len(rows))], 0)
                h = batch.decode_hidden(rows, x)
                steps.append(h)
            blocks += list(np.stack(steps, 1))  # [m, H] per question
        for mt in mts:
            mt.latent_steps += m
        return blocks

    def _decode(self, name, qs, prompts, max_new, mts, cached) -> list[str]:
        """Greedy text for every question through the B rows: waiting questions are prefilled together into free
        rows (when `admit` rows are free, or none is writing), then one decode step for all still writing."""
        agent, batch = self.mas.agents[name], self.batches[name]
        waiting, free = list(range(len(qs))), list(range(self.size))
        row, logits, out, live = {}, {}, {q: [] for q in range(len(qs))}, []
        while waiting or live:
            if waiting and (not live or len(free) >= self.admit):
                new = waiting[:len(free)]
                del waiting[:len(new)]
                for q in new:
                    row[q] = free.pop(0)
                embeds = [self._feed(name, row[q], qs[q], *prompts[q], mts[q], cached) for q in new]
                logits.update(zip(new, batch.prefill_many([row[q] for q in new], embeds), strict=True))
                live += new
            going = []
            for q in live:
                t = int(np.argmax(logits[q]))
                if t not in agent.stop:
                    out[q].append(t)
                if t in agent.stop or len(out[q]) == max_new:
                    free.append(row[q])  # done: its row takes the next waiting question
                else:
                    going.append(q)
            live = going
            if live:
                step = batch.decode([row[q] for q in live], agent.engine.embed([out[q][-1] for q in live]))
                logits = dict(zip(live, step, strict=True))
        for q, ids in out.items():
            mts[q].generated_tokens += len(ids)
        return [agent.tokenizer.decode(out[q], skip_special_tokens=True) for q in range(len(qs))]
