"""Building blocks shared by every architecture: Linear and Embedding over every stored weight format (float,
int4, int4 with a minimum, int8: params.weight_format), attention on TVM's paged KV cache, the gated MLP, and the
decoder layer. Architecture files pick the switches (q/k norm, qkv bias, rope scaling) through ModelConfig.
"""

from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from .config import ModelConfig
from .params import FLOAT, GROUP_SIZE, INT4, INT4_MIN, INT8, INT8_ZERO, MAX_INT


def weight_value(fmt: str, w: tuple, row, j, dtype: str):
    """Weight (row, j) of a stored integer format, as `dtype`:
    INT4      nibble j % 8 of word j // 8, minus MAX_INT, times the group scale;
    INT4_MIN  that nibble times the group scale, plus the group minimum;
    INT8      byte j % 4 of word j // 4, minus INT8_ZERO, times the group scale."""
    qw, qs = w[0], w[1]
    per_word, bits, mask = (4, 8, 0xFF) if fmt == INT8 else (8, 4, 0xF)
    shift = (j % per_word).astype("uint32") * tirx.const(bits, "uint32")
    q = ((qw[row, j // per_word] >> shift) & tirx.const(mask, "uint32")).astype(dtype)
    scale = qs[row, j // GROUP_SIZE]
    if fmt == INT4_MIN:
        return q * scale + w[2][row, j // GROUP_SIZE]
    return (q - tirx.const(MAX_INT if fmt == INT4 else INT8_ZERO, dtype)) * scale


def matmul_nt(x: Tensor, weight: tuple[Tensor, ...], fmt: str, out_features: int, dtype: str,
              name: str = "linear") -> Tensor:
    """y[b, s, o] = sum_k x[b, s, k] * W[o, k] as ONE kernel, W stored [out, in] (no transposed copy).

    `weight` is (W,) for FLOAT, else the stored tensors of `fmt` (q_weight, q_scale[, q_min]); the dequantization
    is a stage inside the same kernel, so neither a transposed nor a dequantized weight is ever written to memory.
    The schedulers (dlight on WebGPU, builder/compile/cpu_schedule.py on CPU) see one reduction with a weight prologue.
    """
    k_dim = x.shape[-1]

    def compute(xt, *w):
        if fmt == FLOAT:
            (wt,) = w
        else:
            wt = te.compute((out_features, k_dim), lambda o, j: weight_value(fmt, w, o, j, dtype), name="dequantize")
        b, s, _ = xt.shape
        k = te.reduce_axis((0, k_dim), name="k")
        if dtype == "float32":
            return te.compute((b, s, out_features), lambda i, t, o: te.sum(xt[i, t, k] * wt[o, k], axis=k),
                              name="matmul")
        # f16 models: products summed in f32, like torch and cuBLAS do (an f16 running sum over a few hundred
        # terms moved SmolLM2's hidden states to a cosine of 0.998 and changed its answer), then rounded once
        acc = te.compute((b, s, out_features), lambda i, t, o: te.sum(
            xt[i, t, k].astype("float32") * wt[o, k].astype("float32"), axis=k), name="matmul")
        return te.compute((b, s, out_features), lambda i, t, o: acc[i, t, o].astype(dtype), name="matmul_cast")

    suffix = {FLOAT: "", INT4: "_q4", INT4_MIN: "_q4m", INT8: "_q8"}[fmt]
    return op.tensor_expr_op(compute, name + suffix, args=[x, *weight])


def _weight_params(module: nn.Module, fmt: str, rows: int, cols: int, dtype: str):
    """The stored tensors of one weight, as params.stored_params lists them (same names, order, shapes)."""
    if fmt == FLOAT:
        module.weight = nn.Parameter((rows, cols), dtype)
        return
    module.q_weight = nn.Parameter((rows, cols // (4 if fmt == INT8 else 8)), "uint32")
    module.q_scale = nn.Parameter((rows, cols // GROUP_SIZE), dtype)
    if fmt == INT4_MIN:
        module.q_min = nn.Parameter((rows, cols // GROUP_SIZE), dtype)


def _weight_args(module: nn.Module, fmt: str) -> tuple:
    if fmt == FLOAT:
        return (module.weight,)
    return (module.q_weight, module.q_scale, module.q_min) if fmt == INT4_MIN else (module.q_weight, module.q_scale)


class Linear(nn.Module):
    """y = x @ W^T (+ b), W in any stored format (dequantized inside the matmul kernel)."""

    def __init__(self, in_features: int, out_features: int, dtype: str, fmt: str, bias: bool = False,
                 kernel: str = "linear"):
        super().__init__()
        self.in_features, self.out_features, self.dtype, self.fmt = in_features, out_features, dtype, fmt
        self.kernel = kernel  # the kernel's name; "lm_head" gets its own WebGPU schedule (gpu_schedule.py)
        _weight_params(self, fmt, out_features, in_features, dtype)
        self.bias = nn.Parameter((out_features,), dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = matmul_nt(x, _weight_args(self, self.fmt), self.fmt, self.out_features, self.dtype, name=self.kernel)
        return y + self.bias if self.bias is not None else y


class Embedding(nn.Module):
    """Token embedding; for integer formats only the looked-up rows are dequantized. Doubles as a tied LM head."""

    def __init__(self, vocab: int, dim: int, dtype: str, fmt: str):
        super().__init__()
        self.vocab, self.dim, self.dtype, self.fmt = vocab, dim, dtype, fmt
        _weight_params(self, fmt, vocab, dim, dtype)

    def forward(self, ids: Tensor) -> Tensor:
        dim, dtype, fmt = self.dim, self.dtype, self.fmt
        if fmt == FLOAT:  # a plain gather (op.take's fast mode warns on every build)

            def gather(w, idx):
                return te.compute((idx.shape[0], dim), lambda n, j: w[idx[n], j], name="embed_gather")

            return op.tensor_expr_op(gather, "embed_gather", args=[self.weight, ids])

        def compute(*args):  # only the looked-up rows are dequantized
            *w, idx = args
            return te.compute((idx.shape[0], dim), lambda n, j: weight_value(fmt, w, idx[n], j, dtype),
                              name="embed_dequantize")

        return op.tensor_expr_op(compute, "embed_dequantize", args=[*_weight_args(self, fmt), ids])

    def lm_head(self, x: Tensor) -> Tensor:
        return matmul_nt(x, _weight_args(self, self.fmt), self.fmt, self.vocab, self.dtype, name="lm_head")


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, fmt: str):
        super().__init__()
        self.cfg = cfg
        h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.qkv_proj = Linear(cfg.hidden_size, (h + 2 * kv) * d, dtype, fmt, bias=cfg.qkv_bias)
        self.o_proj = Linear(h * d, cfg.hidden_size, dtype, fmt)
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
    def __init__(self, cfg: ModelConfig, dtype: str, fmt: str):
        super().__init__()
        self.inter = cfg.intermediate_size
        self.gate_up_proj = Linear(cfg.hidden_size, 2 * cfg.intermediate_size, dtype, fmt)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, dtype, fmt)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = op.split(self.gate_up_proj(x), 2, axis=-1)
        return self.down_proj(op.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: str, fmt: str):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(cfg.hidden_size, -1, cfg.rms_norm_eps, bias=False, dtype=dtype)
        self.self_attn = Attention(cfg, dtype, fmt)
        self.post_attention_layernorm = nn.RMSNorm(cfg.hidden_size, -1, cfg.rms_norm_eps, bias=False, dtype=dtype)
        self.mlp = MLP(cfg, dtype, fmt)

    def forward(self, x: Tensor, kv_cache: PagedKVCache, layer_id: int) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), kv_cache, layer_id)
        return x + self.mlp(self.post_attention_layernorm(x))
