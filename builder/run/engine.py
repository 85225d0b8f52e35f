"""Run a built model library (the CPU .so) through TVM's relax VM: the Python side of the ABI.

One Engine holds one model's weights and any number of sequences, each in its own TVM paged KV cache
(`Engine.sequence()`; the Engine's own methods use its main sequence), or several in one cache stepped together
(`Engine.batch(n)`, builder/run/batch.py). Every call is a forward over new
positions; the cache grows until `reset()` or `truncate(n)`. Used for parity tests, f16 checks, greedy answers, and by
the latent loop.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlcbuild_common.errors import MlcbuildError

from ..manifest import read_manifest, verify_output

if TYPE_CHECKING:
    from .batch import Batch

PAGE_SIZE = 16


def use_threads(threads: int | None = None) -> int:
    """Size TVM's CPU thread pool (it defaults to 1 thread here); only the first call in a process counts,
    because the pool starts with the first parallel kernel. Default: every core this process may use."""
    import os

    n = threads or len(os.sched_getaffinity(0))
    os.environ.setdefault("TVM_NUM_THREADS", str(n))
    return int(os.environ["TVM_NUM_THREADS"])


class Engine:
    def __init__(self, out_dir: Path, max_seq_len: int = 2048, verify: bool = True, threads: int | None = None):
        self.threads = use_threads(threads)
        import tvm
        import tvm_ffi
        from tvm import relax

        from ..convert.tensor_cache import iter_tensor_cache

        self.dir = Path(out_dir)
        manifest = verify_output(self.dir) if verify else read_manifest(self.dir)
        if "cpu" not in manifest.get("libs", {}):
            raise MlcbuildError(f"{self.dir} has no CPU library", "build with `mlcbuild make ... --target cpu|all`")
        self.manifest = manifest
        self.chat_config = json.loads((self.dir / "mlc-chat-config.json").read_text())
        self.dev = tvm.cpu()
        self._shape = lambda *xs: tvm_ffi.Shape(list(xs))
        self._tensor = lambda a: tvm.runtime.tensor(a, self.dev)
        lib = tvm.runtime.load_module(str(self.dir / manifest["libs"]["cpu"]))
        self.vm = relax.VirtualMachine(lib, self.dev)
        self.meta = json.loads(self.vm["_metadata"]())
        names = [p["name"] for p in self.meta["params"]]
        loaded = {n: tvm.runtime.tensor(a, self.dev) for n, a in iter_tensor_cache(self.dir, names)}
        self.params = [loaded[n] for n in names]
        self.dtype = self.meta["dtype"]
        self.hidden_size = self.meta["hidden_size"]
        self.vocab_size = self.meta["vocab_size"]
        self.max_seq_len = min(max_seq_len, self.meta["context_window_size"])
        self.chunk = self.meta["prefill_chunk_size"]
        g = tvm.get_global_func
        self._add_seq, self._begin, self._end, self._popn = (
            g("vm.builtin.kv_state_add_sequence"), g("vm.builtin.kv_state_begin_forward"),
            g("vm.builtin.kv_state_end_forward"), g("vm.builtin.kv_state_popn"))
        self._main = None

    @property
    def main(self) -> "Sequence":
        """The sequence the Engine's own methods use, made on first use (MAS agents use their own)."""
        if self._main is None:
            self._main = self.sequence()
        return self._main

    def new_kv(self, n_seqs: int, positions: int):
        """A fresh paged KV cache holding n_seqs empty sequences, `positions` slots in all (Sequence and Batch)."""
        s = self._shape
        kv = self.vm["create_tir_paged_kv_cache"](s(n_seqs), s(positions), s(self.chunk), s(PAGE_SIZE), s(0))
        for i in range(n_seqs):
            self._add_seq(kv, i)
        return kv

    def batch(self, n: int, max_seq_len: int | None = None) -> "Batch":
        """n sequences in one KV cache whose decode steps run together (builder.run.batch)."""
        from .batch import Batch

        return Batch(self, n, min(max_seq_len or self.max_seq_len, self.max_seq_len))

    def sequence(self, max_seq_len: int | None = None) -> "Sequence":
        """A new, empty sequence with its own KV cache on this model's weights (one per agent in the MAS)."""
        return Sequence(self, min(max_seq_len or self.max_seq_len, self.max_seq_len))

    # -- the ABI on the main sequence ----------------------------------------------------------------
    @property
    def length(self) -> int:
        return self.main.length

    def reset(self) -> None:
        self.main.reset()

    def hidden(self, embeds: np.ndarray) -> np.ndarray:
        return self.main.hidden(embeds)

    def prefill(self, embeds: np.ndarray) -> np.ndarray:
        return self.main.prefill(embeds)

    def decode(self, embed: np.ndarray) -> np.ndarray:
        return self.main.decode(embed)

    def decode_hidden(self, embed: np.ndarray) -> np.ndarray:
        return self.main.decode_hidden(embed)

    def embed(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype="int32").reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):  # out-of-range ids crash `take`
            raise MlcbuildError(f"token id {int(ids.max())} outside the vocabulary ({self.vocab_size})",
                                "use this model's tokenizer")
        return self.vm["embed"](self._tensor(ids), self.params).numpy()

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        h = np.asarray(hidden, dtype="float32").reshape(1, -1, self.hidden_size)
        return self.vm["get_logits"](self._tensor(h), self.params).numpy()[0]

    # -- text -------------------------------------------------------------------------------------------
    def tokenizer(self):
        if not hasattr(self, "_tok"):
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(str(self.dir))
        return self._tok

    def chat_ids(self, messages: list[dict]) -> list[int]:
        tok = self.tokenizer()
        if tok.chat_template is None:
            raise MlcbuildError(f"{self.dir} has no chat template", "rebuild from a model with one")
        out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)

    def stop_ids(self) -> set[int]:
        eos = self.chat_config.get("eos_token_id")
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        tok = self.tokenizer()
        if tok.eos_token_id is not None:
            ids.add(tok.eos_token_id)
        return ids

    def generate(self, prompt_ids, max_new_tokens: int = 32, stop: bool = True) -> list[int]:
        """Greedy decoding from a fresh sequence."""
        self.reset()
        logits = self.prefill(self.embed(prompt_ids))
        out, stops = [], self.stop_ids() if stop else set()
        for _ in range(max_new_tokens):
            nxt = int(np.argmax(logits))
            if nxt in stops:
                break
            out.append(nxt)
            logits = self.decode(self.embed([nxt])[0])
        return out


class Sequence:
    """One sequence in its own paged KV cache: every call is a forward over new positions, and the cache grows
    until `reset()` or `truncate(n)` (which keeps the first n positions, e.g. a prompt prefix shared by rounds)."""

    def __init__(self, engine: Engine, max_seq_len: int):
        self.engine, self.max_seq_len = engine, max_seq_len
        self.kv, self.length = None, 0
        self.reset()

    def reset(self) -> None:
        """Forget every position: a fresh KV cache with one empty sequence."""
        self.kv = self.engine.new_kv(1, self.max_seq_len)
        self.length = 0

    def truncate(self, n: int) -> None:
        """Keep the first n positions (their KV entries stay valid: causal attention never looked ahead)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a sequence of {self.length} positions to {n}")
        if n < self.length:
            self.engine._popn(self.kv, 0, self.length - n)
            self.length = n

    def _room(self, n: int) -> None:
        """Refuse, before any work, `n` new positions that the KV cache cannot hold."""
        if self.length + n > self.max_seq_len:
            e = self.engine
            held = f" after the {self.length} already held" if self.length else ""
            cap = e.meta["context_window_size"]
            fix = f"shorten it, or pass --max-seq-len up to {cap} (the model's context)" if self.max_seq_len < cap \
                else "shorten it: the model's context is full"
            raise MlcbuildError(f"{n} positions{held} do not fit the {self.max_seq_len}-position KV cache", fix)

    def _forward(self, fn: str, embeds: np.ndarray) -> np.ndarray:
        e, n = self.engine, embeds.shape[0]
        self._room(n)
        e._begin(self.kv, e._shape(0), e._shape(n))
        out, self.kv = e.vm[fn](e._tensor(embeds[None].astype(e.dtype)), self.kv, e.params)
        e._end(self.kv)
        self.length += n
        return out.numpy()[0]

    def hidden(self, embeds: np.ndarray) -> np.ndarray:
        """get_last_hidden over new positions (chunked): [n, H] float32."""
        self._room(len(embeds))
        c = self.engine.chunk
        return np.concatenate([self._forward("get_last_hidden", embeds[i:i + c]) for i in range(0, len(embeds), c)], 0)

    def prefill(self, embeds: np.ndarray) -> np.ndarray:
        """Logits of the last new position: [V] float32."""
        self._room(len(embeds))
        c = self.engine.chunk
        for i in range(0, len(embeds) - c, c):
            self._forward("get_last_hidden", embeds[i:i + c])
        return self._forward("prefill", embeds[(max(len(embeds) - 1, 0) // c) * c:])[0]

    def decode(self, embed: np.ndarray) -> np.ndarray:
        return self._forward("decode", embed.reshape(1, -1))[0]

    def decode_hidden(self, embed: np.ndarray) -> np.ndarray:
        return self._forward("decode_last_hidden", embed.reshape(1, -1))[0]
