"""Building blocks shared by every architecture: int4-aware Linear and Embedding, attention on TVM's
paged KV cache, the gated MLP, and the decoder layer. Architecture files pick the switches
(q/k norm, qkv bias, rope scaling) through ModelConfig.
"""

from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from .config import ModelConfig
from .params import GROUP_SIZE, MAX_INT


def _int4_value(qw, qs, row, j, dtype: str):
    """Weight (row, j) from packed nibbles: nibble j % 8 of word j // 8, minus MAX_INT, times its group scale."""
    shift = (j % 8).astype("uint32") * tirx.const(4, "uint32")
    nib = (qw[row, j // 8] >> shift) & tirx.const(0xF, "uint32")
    return (nib.astype(dtype) - tirx.const(MAX_INT, dtype)) * qs[row, j // GROUP_SIZE]


def matmul_nt(x: Tensor, weight: Tensor | tuple[Tensor, Tensor], out_features: int, dtype: str,
              name: str = "linear") -> Tensor:
    """y[b, s, o] = sum_k x[b, s, k] * W[o, k] as ONE kernel, W stored [out, in] (no transposed copy).

    `weight` is a float W or the int4 pair (q_weight, q_scale); the dequantization is a stage inside the same
    kernel, so neither a transposed nor a dequantized weight is ever written to memory. The schedulers
    (dlight on WebGPU, builder/cpu_schedule.py on CPU) see one reduction with a weight prologue.
    """
    quantized = isinstance(weight, tuple)
    k_dim = x.shape[-1]

    def compute(xt, *w):
        if quantized:
            qw, qs = w
            wt = te.compute((out_features, k_dim), lambda o, j: _int4_value(qw, qs, o, j, dtype), name="dequantize")
        else:
            (wt,) = w
        b, s, _ = xt.shape
        k = te.reduce_axis((0, k_dim), name="k")
        return te.compute((b, s, out_features), lambda i, t, o: te.sum(xt[i, t, k] * wt[o, k], axis=k),
                          name="matmul")

    args = [x, *weight] if quantized else [x, weight]
    return op.tensor_expr_op(compute, name + ("_q4" if quantized else ""), args=args)


class Linear(nn.Module):
    """y = x @ W^T (+ b). Float weights, or int4 groups (q_weight, q_scale) dequantized in the graph."""

    def __init__(self, in_features: int, out_features: int, dtype: str, quantized: bool, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.dtype, self.quantized = in_features, out_features, dtype, quantized
        if quantized:
            self.q_weight = nn.Parameter((out_features, in_features // 8), "uint32")
            self.q_scale = nn.Parameter((out_features, in_features // GROUP_SIZE), dtype)
        else:
            self.weight = nn.Parameter((out_features, in_features), dtype)
        self.bias = nn.Parameter((out_features,), dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        w = (self.q_weight, self.q_scale) if self.quantized else self.weight
        y = matmul_nt(x, w, self.out_features, self.dtype)
        return y + self.bias if self.bias is not None else y


class Embedding(nn.Module):
    """Token embedding; under int4 only the looked-up rows are dequantized. Doubles as a tied LM head."""

    def __init__(self, vocab: int, dim: int, dtype: str, quantized: bool):
        super().__init__()
        self.vocab, self.dim, self.dtype, self.quantized = vocab, dim, dtype, quantized
        if quantized:
            self.q_weight = nn.Parameter((vocab, dim // 8), "uint32")
            self.q_scale = nn.Parameter((vocab, dim // GROUP_SIZE), dtype)
        else:
            self.weight = nn.Parameter((vocab, dim), dtype)

    def forward(self, ids: Tensor) -> Tensor:
        dim, dtype = self.dim, self.dtype
        if not self.quantized:  # a plain gather (op.take's fast mode warns on every build)

            def gather(w, idx):
                return te.compute((idx.shape[0], dim), lambda n, j: w[idx[n], j], name="embed_gather")

            return op.tensor_expr_op(gather, "embed_gather", args=[self.weight, ids])

        def compute(qw, qs, idx):  # only the looked-up rows are dequantized
            return te.compute((idx.shape[0], dim), lambda n, j: _int4_value(qw, qs, idx[n], j, dtype),
                              name="embed_dequantize")

        return op.tensor_expr_op(compute, "embed_dequantize", args=[self.q_weight, self.q_scale, ids])

    def lm_head(self, x: Tensor) -> Tensor:
        w = (self.q_weight, self.q_scale) if self.quantized else self.weight
        return matmul_nt(x, w, self.vocab, self.dtype, name="lm_head")


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, quantized: bool):
        super().__init__()
        self.cfg = cfg
        h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.qkv_proj = Linear(cfg.hidden_size, (h + 2 * kv) * d, dtype, quantized, bias=cfg.qkv_bias)
        self.o_proj = Linear(h * d, cfg.hidden_size, dtype, quantized)
        if cfg.qk_norm:
            self.q_norm = nn.RMSNorm(d, -1, cfg.rms_norm_eps, bias=False, dtype=dtype)
            self.k_norm = nn.RMSNorm(d, -1, cfg.rms_norm_eps, bias=False, dtype=dtype)

    def forward(self, x: Tensor, kv_cache: PagedKVCache, layer_id: int) -> Tensor:
        c = self.cfg
        h, kv, d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        b, s, _ = x.shape
        qkv = op.reshape(self.qkv_proj(x), (b, s, h + 2 * kv, d))
        if c.qk_norm:  # Qwen3 normalises q and k per head; RoPE is applied afterwards inside the cache
            q, k, v = op.split(qkv, [h, h + kv], axis=2)
            qkv = op.concat([self.q_norm(q), self.k_norm(k), v], dim=2)
        out = kv_cache.attention_with_fused_qkv(layer_id, qkv, h, sm_scale=d**-0.5)
        return self.o_proj(op.reshape(out, (b, s, h * d)))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, quantized: bool):
        super().__init__()
        self.inter = cfg.intermediate_size
        self.gate_up_proj = Linear(cfg.hidden_size, 2 * cfg.intermediate_size, dtype, quantized)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, dtype, quantized)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = op.split(self.gate_up_proj(x), 2, axis=-1)
        return self.down_proj(op.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, quantized: bool):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(cfg.hidden_size, -1, cfg.rms_norm_eps, bias=False, dtype=dtype)
        self.self_attn = Attention(cfg, dtype, quantized)
        self.post_attention_layernorm = nn.RMSNorm(cfg.hidden_size, -1, cfg.rms_norm_eps, bias=False, dtype=dtype)
        self.mlp = MLP(cfg, dtype, quantized)

    def forward(self, x: Tensor, kv_cache: PagedKVCache, layer_id: int) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), kv_cache, layer_id)
        return x + self.mlp(self.post_attention_layernorm(x))
