"""Several sequences of one model in one paged KV cache, stepped together: `Engine.batch(n)`.

A decode step over k active sequences is one forward of k rows (`get_last_hidden`, then `get_logits` on the same
rows; at most STEP_ROWS per forward, and a lone row through the one-row functions): every weight is read once for
all of them, and the CPU kernels for a few rows share each dequantized weight vector between rows
(builder/compile/cpu_schedule.py). Prompts of 16 rows or more share forwards (`hidden_many`,
`prefill_many`: each GEMM row sums the same way whatever else is in the forward), shorter ones go alone. A batched
row sums in a lone row's order, so each sequence's logits have the bits it would have alone (tests/test_batch.py):
batching changes speed, not answers.
"""

import numpy as np

from mlcbuild_common.errors import MlcbuildError

# rows in one forward: below cpu_schedule.FEW_ROWS (16), where every kernel sums each row in a lone row's order (at
# 16 rows the GEMM takes over and the logits move by ~1e-5: bench/batch_decode.py measured 6.3e-5)
STEP_ROWS = 15
FEW_ROWS = 16  # cpu_schedule.FEW_ROWS: a forward of this many rows or more takes the GEMM kernels


class Batch:
    def __init__(self, engine, n: int, max_seq_len: int):
        if n < 1:
            raise MlcbuildError(f"a batch of {n} sequences", "use at least one")
        self.engine, self.n, self.max_seq_len = engine, n, max_seq_len
        # a `make --cpu-dot int8` build: its one-row kernels round activations to int8 and the many-row ones do
        # not, so every row steps alone (the same answers as unbatched, without the batching speed-up)
        int8 = engine.manifest.get("options", {}).get("cpu_dot") == "int8"
        self.step_rows = 1 if int8 else STEP_ROWS
        self.kv, self.lengths = None, [0] * n
        self.reset()

    def reset(self) -> None:
        """Forget every position of every sequence: a fresh KV cache holding n empty sequences."""
        self.kv = self.engine.new_kv(self.n, self.n * self.max_seq_len)
        self.lengths = [0] * self.n

    def truncate(self, i: int, n: int) -> None:
        """Keep the first n positions of sequence i (0 empties it for a new prompt)."""
        if not 0 <= n <= self.lengths[i]:
            raise ValueError(f"cannot truncate sequence {i} of {self.lengths[i]} positions to {n}")
        if n < self.lengths[i]:
            self.engine._popn(self.kv, i, self.lengths[i] - n)
            self.lengths[i] = n

    def _room(self, ids, counts) -> None:
        for i, c in zip(ids, counts, strict=True):
            if self.lengths[i] + c > self.max_seq_len:
                raise MlcbuildError(f"{c} positions after the {self.lengths[i]} held do not fit sequence {i}'s "
                                    f"{self.max_seq_len}-position KV cache", "shorten the prompt or the answer")

    def _forward(self, fn: str, ids: list[int], counts: list[int], embeds: np.ndarray) -> np.ndarray:
        e = self.engine
        e._begin(self.kv, e._shape(*ids), e._shape(*counts))
        out, self.kv = e.vm[fn](e._tensor(embeds[None].astype(e.dtype)), self.kv, e.params)
        e._end(self.kv)
        for i, c in zip(ids, counts, strict=True):
            self.lengths[i] += c
        return out.numpy()[0]

    # -- one sequence at a time (prompts) --------------------------------------------------------------
    def hidden(self, i: int, embeds: np.ndarray) -> np.ndarray:
        """get_last_hidden over new positions of sequence i (chunked): [n, H] float32."""
        self._room([i], [len(embeds)])
        c = self.engine.chunk
        return np.concatenate([self._forward("get_last_hidden", [i], [len(embeds[j:j + c])], embeds[j:j + c])
                               for j in range(0, len(embeds), c)], 0)

    def prefill(self, i: int, embeds: np.ndarray) -> np.ndarray:
        """Logits of sequence i's last new position: [V] float32 (as Sequence.prefill)."""
        self._room([i], [len(embeds)])
        c = self.engine.chunk
        for j in range(0, len(embeds) - c, c):
            self._forward("get_last_hidden", [i], [c], embeds[j:j + c])
        last = embeds[(max(len(embeds) - 1, 0) // c) * c:]
        return self._forward("prefill", [i], [len(last)], last)[0]

    # -- several prompts in one forward -----------------------------------------------------------------
    def hidden_many(self, ids: list[int], embeds: list[np.ndarray]) -> list[np.ndarray]:
        """hidden() for several sequences: [n_j, H] each. Prompts of FEW_ROWS rows or more share forwards (up to
        a chunk of rows in one): every weight panel is packed once for all of them, and a GEMM row sums the same
        way whatever else is in the forward, so each gets the bits it gets alone (tests/test_batch.py). Shorter
        ones, and every prompt on an int8 build, go alone (their kernels differ from the GEMM's)."""
        out: dict[int, np.ndarray] = {}
        for group in self._groups(ids, embeds):
            if len(group) == 1:
                j = group[0]
                out[j] = self.hidden(ids[j], embeds[j])
                continue
            sizes = [len(embeds[j]) for j in group]
            self._room([ids[j] for j in group], sizes)
            rows = np.concatenate([embeds[j] for j in group])
            h = self._forward("get_last_hidden", [ids[j] for j in group], sizes, rows)
            for j, a, b in zip(group, np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes), strict=True):
                out[j] = h[a:b]
        return [out[j] for j in range(len(ids))]

    def prefill_many(self, ids: list[int], embeds: list[np.ndarray]) -> np.ndarray:
        """prefill() for several sequences: the logits of each one's last new position, [k, V]."""
        if self.step_rows == 1:  # int8 build: a prefill's last row takes the int8 LM head, get_logits does not
            return np.stack([self.prefill(i, x) for i, x in zip(ids, embeds, strict=True)])
        last = np.stack([h[-1] for h in self.hidden_many(ids, embeds)])
        e = self.engine
        return np.concatenate([e.vm["get_logits"](e._tensor(last[j:j + self.step_rows][None]), e.params).numpy()[0]
                               for j in range(0, len(last), self.step_rows)], 0)

    def _groups(self, ids, embeds) -> list[list[int]]:
        """Indices into `ids`, grouped for hidden_many: long prompts packed up to a chunk, the rest alone."""
        c, groups, cur, rows = self.engine.chunk, [], [], 0
        for j, x in enumerate(embeds):
            if self.step_rows == 1 or not FEW_ROWS <= len(x) <= c:
                groups.append([j])
                continue
            if rows + len(x) > c:
                groups.append(cur)
                cur, rows = [], 0
            cur.append(j)
            rows += len(x)
        return groups + ([cur] if cur else [])

    # -- one step of several sequences together --------------------------------------------------------
    def decode_hidden(self, ids: list[int], embeds: np.ndarray) -> np.ndarray:
        """One new position for each sequence in `ids` (embeds [k, H], row j for ids[j]): hidden [k, H]."""
        return self._step(ids, embeds, logits=False)

    def decode(self, ids: list[int], embeds: np.ndarray) -> np.ndarray:
        """decode_hidden, then the LM head on the k rows together: logits [k, V]."""
        return self._step(ids, embeds, logits=True)

    def _step(self, ids, embeds, logits: bool) -> np.ndarray:
        if len(set(ids)) != len(ids):
            raise ValueError(f"a sequence appears twice in one step: {ids}")
        ids, embeds = list(ids), np.asarray(embeds).reshape(len(ids), -1)
        self._room(ids, [1] * len(ids))
        e, out = self.engine, []
        for j in range(0, len(ids), self.step_rows):
            part, x = ids[j:j + self.step_rows], embeds[j:j + self.step_rows]
            if len(part) == 1:  # a lone row: the one-row functions (the same bits, without a tile's padding)
                out.append(self._forward("decode" if logits else "decode_last_hidden", part, [1], x)[:1])
                continue
            h = self._forward("get_last_hidden", part, [1] * len(part), x)
            out.append(e.vm["get_logits"](e._tensor(h[None]), e.params).numpy()[0] if logits else h)
        return np.concatenate(out, 0)
