"""The decoder-only causal LM every architecture builds, with the functions of our model ABI.

The exported names and signatures live in abi.py; this class implements them. Input embeddings come in
the model dtype (as in MLC); logits and hidden states go out as float32 so the latent loop and the
links read the same numbers from f16 and f32 libraries.
"""

from tvm import relax, te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache, RopeMode, TIRPagedKVCache
from tvm.target import Target

from .config import ModelConfig
from .layers import DecoderLayer, Embedding, Linear
from .params import model_dtype, weight_format


class Body(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, quant: str):
        super().__init__()
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size, dtype, weight_format(quant, "embedding"))
        linear = weight_format(quant, "linear")
        self.layers = nn.ModuleList([DecoderLayer(cfg, dtype, linear) for _ in range(cfg.num_hidden_layers)])
        self.norm = nn.RMSNorm(cfg.hidden_size, -1, cfg.rms_norm_eps, bias=False, dtype=dtype)


def _last_position(h: Tensor) -> Tensor:
    """[b, s, d] -> [b, 1, d]: the last position only (prefill needs one row of logits)."""

    def compute(x):
        b, s, d = x.shape
        return te.compute((b, 1, d), lambda i, _, k: x[i, s - 1, k], name="last_position")

    return op.tensor_expr_op(compute, "last_position", args=[h])


class CausalLM(nn.Module):
    """`body` builds embed_tokens, layers and norm (Body here; an architecture may bring its own, e.g. Gemma 3's)."""

    def __init__(self, cfg: ModelConfig, quant: str, target: Target, body=Body):
        super().__init__()
        self.cfg, self.quant, self.target = cfg, quant, target
        self.dtype = model_dtype(quant)
        self.model = body(cfg, self.dtype, quant)
        if not cfg.tie_word_embeddings:
            self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, self.dtype, weight_format(quant, "linear"),
                                  kernel="lm_head")

    # -- internals --------------------------------------------------------------------------------
    def _hidden(self, embeds: Tensor, kv: PagedKVCache) -> Tensor:
        h = embeds
        for i, layer in enumerate(self.model.layers):
            h = layer(h, kv, i)
        return self.model.norm(h)

    def _logits(self, hidden: Tensor) -> Tensor:
        if self.cfg.tie_word_embeddings:
            logits = self.model.embed_tokens.lm_head(hidden)
        else:
            logits = self.lm_head(hidden)
        logits = logits if logits.dtype == "float32" else logits.astype("float32")
        cap = self.cfg.final_logit_softcap
        return op.tanh(logits / cap) * cap if cap > 0 else logits

    @staticmethod
    def _f32(x: Tensor) -> Tensor:
        return x if x.dtype == "float32" else x.astype("float32")

    # -- the ABI (see abi.py) -----------------------------------------------------------------------
    def embed(self, input_ids: Tensor):
        e = self.model.embed_tokens(input_ids)
        # Gemma scales its embeddings (by sqrt(hidden) rounded to the model dtype, as transformers does)
        return e * self.cfg.embed_scale if self.cfg.embed_scale != 1.0 else e

    def prefill(self, input_embed: Tensor, paged_kv_cache: PagedKVCache):
        return self._logits(_last_position(self._hidden(input_embed, paged_kv_cache))), paged_kv_cache

    def decode(self, input_embed: Tensor, paged_kv_cache: PagedKVCache):
        return self._logits(self._hidden(input_embed, paged_kv_cache)), paged_kv_cache

    def get_last_hidden(self, input_embed: Tensor, paged_kv_cache: PagedKVCache):
        return self._f32(self._hidden(input_embed, paged_kv_cache)), paged_kv_cache

    def decode_last_hidden(self, input_embed: Tensor, paged_kv_cache: PagedKVCache):
        return self._f32(self._hidden(input_embed, paged_kv_cache)), paged_kv_cache

    def get_logits(self, hidden: Tensor):
        h = hidden if hidden.dtype == self.dtype else hidden.astype(self.dtype)
        return self._logits(h)

    def create_tir_paged_kv_cache(self, max_batch_size: tirx.Var, max_total_seq_len: tirx.Var,
                                  prefill_chunk_size: tirx.Var, page_size: tirx.Var,
                                  support_sliding_window: tirx.Var) -> PagedKVCache:
        c = self.cfg
        # Sliding layers (Gemma 3) attend to the last c.sliding_window positions through the cache's own per-layer
        # window: chunks of at most that many positions keep the chunk's self-attention inside it (config.py)
        kinds = [("mha_sliding" if k == "sliding_attention" else "mha") for k in c.layer_types] or "mha"
        window = {"layer_sliding_window_size": c.sliding_window} if "mha_sliding" in kinds else {}
        own_rope = getattr(self.model, "rope_in_graph", False)  # then q and k arrive rotated
        return TIRPagedKVCache(
            attn_kind=kinds, max_batch_size=max_batch_size, max_total_seq_len=max_total_seq_len,
            prefill_chunk_size=prefill_chunk_size, page_size=page_size,
            support_sliding_window=support_sliding_window,
            layer_partition=relax.ShapeExpr([0, c.num_hidden_layers]),
            num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
            num_key_value_heads=c.num_key_value_heads, qk_head_dim=c.head_dim, v_head_dim=c.head_dim,
            mla_original_qk_head_dim=0, mla_original_v_head_dim=0,
            rope_mode=RopeMode.NONE if own_rope else RopeMode.NORMAL, rope_scale=1,
            rope_theta=c.rope_theta, rope_scaling={} if own_rope else dict(c.rope_scaling),
            rope_ext_factors=relax.prim_value(0),  # only longrope uses extension factors
            rotary_dim=c.head_dim, enable_disaggregation=False, dtype=self.dtype, target=self.target, **window)

