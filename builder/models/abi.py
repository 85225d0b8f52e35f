"""The model ABI: every library mlcbuild builds exports exactly these functions.

MLC names where MLC has a counterpart; the hidden-state functions are ours.

| function                   | arguments (+ packed params)               | returns                          |
|----------------------------|-------------------------------------------|----------------------------------|
| embed                      | input_ids int32 [seq]                     | embeddings [seq, H] (model dtype)|
| prefill                    | input_embed [1, seq, H], kv               | (logits f32 [1, 1, V], kv)       |
| decode                     | input_embed [1, 1, H], kv                 | (logits f32 [1, 1, V], kv)       |
| get_last_hidden            | input_embed [1, seq, H], kv               | (hidden f32 [1, seq, H], kv)     |
| decode_last_hidden         | input_embed [1, 1, H], kv                 | (hidden f32 [1, 1, H], kv)       |
| get_logits                 | hidden [1, n, H] (f32 or model dtype)     | logits f32 [1, n, V]             |
| create_tir_paged_kv_cache  | max_batch_size, max_total_seq_len,        | kv (TVM's TIR paged KV cache)    |
|                            | prefill_chunk_size, page_size,            |                                  |
|                            | support_sliding_window                    |                                  |
| _metadata                  | -                                         | JSON string (see `metadata`)     |

Every library also exports the sampling functions WebLLM's chat pipeline calls (sampling.py), so stock
WebLLM can chat with it; `_metadata["functions"]` lists both sets.

Hidden states are last-layer states after the final norm. A latent step is decode_last_hidden fed with
a link's output: it never touches the LM head. The KV cache is driven at run time by
vm.builtin.kv_state_{add_sequence, begin_forward, end_forward}.
"""

import json

from tvm import relax
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from .decoder import CausalLM
from .sampling import FUNCTIONS as SAMPLING_FUNCTIONS

FUNCTIONS = ("embed", "prefill", "decode", "get_last_hidden", "decode_last_hidden", "get_logits",
             "create_tir_paged_kv_cache")
PACKED = {"param_mode": "packed", "effect_mode": "none"}
ABI_VERSION = 1


def export_spec(model: CausalLM) -> dict:
    h, dt = model.cfg.hidden_size, model.dtype
    kv = nn.spec.Object(object_type=PagedKVCache)
    return {
        "embed": {"input_ids": nn.spec.Tensor(["seq_len"], "int32"), "$": PACKED},
        "prefill": {"input_embed": nn.spec.Tensor([1, "seq_len", h], dt), "paged_kv_cache": kv, "$": PACKED},
        "decode": {"input_embed": nn.spec.Tensor([1, 1, h], dt), "paged_kv_cache": kv, "$": PACKED},
        "get_last_hidden": {"input_embed": nn.spec.Tensor([1, "seq_len", h], dt), "paged_kv_cache": kv,
                            "$": PACKED},
        "decode_last_hidden": {"input_embed": nn.spec.Tensor([1, 1, h], dt), "paged_kv_cache": kv, "$": PACKED},
        "get_logits": {"hidden": nn.spec.Tensor([1, "n", h], "float32"), "$": PACKED},
        "create_tir_paged_kv_cache": {
            "max_batch_size": int, "max_total_seq_len": int, "prefill_chunk_size": int, "page_size": int,
            "support_sliding_window": int, "$": {"param_mode": "none", "effect_mode": "none"}},
    }


def metadata(model: CausalLM, params: list[tuple[str, nn.Parameter]]) -> dict:
    c = model.cfg
    return {
        "abi_version": ABI_VERSION,
        "model_type": c.model_type,
        "quantization": model.quant,
        "dtype": model.dtype,
        "hidden_size": c.hidden_size,
        "vocab_size": c.vocab_size,
        "num_hidden_layers": c.num_hidden_layers,
        "context_window_size": c.context_window_size,
        "prefill_chunk_size": c.prefill_chunk_size,
        "sliding_window_size": -1,
        "attention_sink_size": -1,
        "tensor_parallel_shards": 1,
        "kv_state_kind": "kv_cache",
        "functions": list(FUNCTIONS) + list(SAMPLING_FUNCTIONS),
        "params": [{"name": n, "shape": [int(d) for d in p.shape], "dtype": p.dtype} for n, p in params],
    }


def export(model: CausalLM) -> tuple[relax.Expr, list[tuple[str, nn.Parameter]], dict]:
    """IRModule with the ABI functions and `_metadata`; the parameter order the functions expect."""
    mod, params = model.export_tvm(spec=export_spec(model))
    meta = metadata(model, params)
    bb = relax.BlockBuilder(mod)
    with bb.function("_metadata", params=[]):
        bb.emit_func_output(relax.expr.String(json.dumps(meta, sort_keys=True)))
    return bb.get(), params, meta
