"""Gemma 3's decoder: RMSNorm scaled by (1 + weight), q/k norms, norms before and after both attention and the MLP,
a gelu-tanh gated MLP, and RoPE with one base for the sliding layers and another for the global ones.

RoPE is applied here, in the graph, not by TVM's paged KV cache: the cache rotates every layer with the one base it
was built with. Our cache runs with RopeMode.NONE and stores keys already rotated. The sliding window itself is the
cache's (attention kind "mha_sliding" per layer, see decoder.CausalLM.create_tir_paged_kv_cache).
"""

import numpy as np
from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from .config import ModelConfig
from .layers import Embedding, Linear
from .params import weight_format

SLIDING = "sliding_attention"


class GemmaRMSNorm(nn.Module):
    """x / rms(x) * (1 + weight), in float32 and rounded once to the model dtype, as transformers' Gemma3RMSNorm.
    The stored weight is Hugging Face's (without the 1)."""

    def __init__(self, dim: int, eps: float, dtype: str):
        super().__init__()
        self.eps, self.dtype = eps, dtype
        self.weight = nn.Parameter((dim,), dtype)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.dtype == "float32" else self.weight.astype("float32")
        x32 = x if x.dtype == "float32" else x.astype("float32")
        y = op.rms_norm(x32, w + 1.0, axes=-1, epsilon=self.eps)
        return y if x.dtype == "float32" else y.astype(x.dtype)


def inverse_frequencies(head_dim: int, theta: float, scaling: dict) -> np.ndarray:
    """float32 [head_dim / 2], computed as transformers computes them ("linear" scaling divides them by its factor)."""
    exps = np.arange(0, head_dim, 2).astype(np.float32) / np.float32(head_dim)
    inv = np.float32(1.0) / np.power(np.float32(theta), exps, dtype=np.float32)
    if scaling.get("rope_type") == "linear":
        inv = inv / np.float32(scaling["factor"])
    return inv.astype(np.float32)


def rotate(qkv: Tensor, positions: Tensor, inv_freq: Tensor, heads: int) -> Tensor:
    """RoPE (rotate-half layout) on the first `heads` heads of qkv [b, s, n, d] (q and k); v passes through.
    positions [b * s] int32 are the tokens' positions in their sequence; angles in float32."""

    def compute(x, pos, inv):
        s, d = x.shape[1], int(x.shape[3])
        half = d // 2

        def value(i, t, h, j):
            angle = pos[i * s + t].astype("float32") * inv[j % half]
            # rotate_half: the partner is j + half (negated) in the first half, j - half in the second
            sign = tirx.if_then_else(j < half, tirx.const(-1.0, "float32"), tirx.const(1.0, "float32"))
            partner = x[i, t, h, (j + half) % d].astype("float32")
            rotated = x[i, t, h, j].astype("float32") * tirx.cos(angle) + sign * partner * tirx.sin(angle)
            return tirx.if_then_else(h < heads, rotated.astype(x.dtype), x[i, t, h, j])

        return te.compute(x.shape, value, name="rope")

    return op.tensor_expr_op(compute, "rope", args=[qkv, positions, inv_freq])


class GemmaAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, fmt: str, sliding: bool):
        super().__init__()
        self.cfg = cfg
        h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.qkv_proj = Linear(cfg.hidden_size, (h + 2 * kv) * d, dtype, fmt)
        self.o_proj = Linear(h * d, cfg.hidden_size, dtype, fmt)
        self.q_norm = GemmaRMSNorm(d, cfg.rms_norm_eps, dtype)
        self.k_norm = GemmaRMSNorm(d, cfg.rms_norm_eps, dtype)
        # sliding layers: the local base, no scaling; global layers: rope_theta with the configured scaling
        self.rope = (cfg.rope_local_theta, {}) if sliding else (cfg.rope_theta, dict(cfg.rope_scaling))

    def forward(self, x: Tensor, kv_cache: PagedKVCache, layer_id: int) -> Tensor:
        c = self.cfg
        h, kv, d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        b, s, _ = x.shape
        q, k, v = op.split(op.reshape(self.qkv_proj(x), (b, s, h + 2 * kv, d)), [h, h + kv], axis=2)
        qkv = op.concat([self.q_norm(q), self.k_norm(k), v], dim=2)
        inv_freq = Tensor.from_const(inverse_frequencies(d, *self.rope))
        qkv = rotate(qkv, kv_cache.get_query_positions(b * s), inv_freq, h + kv)
        out = kv_cache.attention_with_fused_qkv(layer_id, qkv, h, sm_scale=c.attn_scale or d**-0.5)
        return self.o_proj(op.reshape(out, (b, s, h * d)))


class GemmaMLP(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, fmt: str):
        super().__init__()
        self.gate_up_proj = Linear(cfg.hidden_size, 2 * cfg.intermediate_size, dtype, fmt)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, dtype, fmt)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = op.split(self.gate_up_proj(x), 2, axis=-1)
        return self.down_proj(op.gelu(gate, approximate="tanh") * up)


class GemmaDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, fmt: str, sliding: bool):
        super().__init__()
        eps, hid = cfg.rms_norm_eps, cfg.hidden_size
        self.input_layernorm = GemmaRMSNorm(hid, eps, dtype)
        self.self_attn = GemmaAttention(cfg, dtype, fmt, sliding)
        self.post_attention_layernorm = GemmaRMSNorm(hid, eps, dtype)
        self.pre_feedforward_layernorm = GemmaRMSNorm(hid, eps, dtype)
        self.mlp = GemmaMLP(cfg, dtype, fmt)
        self.post_feedforward_layernorm = GemmaRMSNorm(hid, eps, dtype)

    def forward(self, x: Tensor, kv_cache: PagedKVCache, layer_id: int) -> Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), kv_cache, layer_id))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class GemmaBody(nn.Module):
    """The same attribute names as decoder.Body (embed_tokens, layers, norm), so CausalLM drives both alike."""

    rope_in_graph = True  # the KV cache must not rotate again (RopeMode.NONE)

    def __init__(self, cfg: ModelConfig, dtype: str, quant: str):
        super().__init__()
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size, dtype, weight_format(quant, "embedding"))
        linear = weight_format(quant, "linear")
        kinds = cfg.layer_types or ["full_attention"] * cfg.num_hidden_layers
        self.layers = nn.ModuleList([GemmaDecoderLayer(cfg, dtype, linear, k == SLIDING) for k in kinds])
        self.norm = GemmaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
