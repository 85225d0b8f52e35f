"""The two RecursiveLink modules.

InnerLink (one agent, hidden d -> its own input-embedding space d):
    post_ln(x + W2 GELU(W1 pre_ln(x)))
OuterLink (agent i, hidden d_src -> agent j's input-embedding space d_tgt):
    ln_tgt(W2 GELU(W1 ln_src(x)) + W_res x)          bottleneck width 2 * d_tgt

Initialisation (so an UNTRAINED link already emits vectors at the target embedding scale):
- a LayerNorm output has per-row norm ~ sqrt(d) * gain, so the final LayerNorm gain is set to
  mean_row_norm(target embedding matrix) / sqrt(d_tgt) and its bias to 0;
- W2 starts small (std 1e-3) so the untrained link is close to its residual path;
- W_res starts as the identity when d_src == d_tgt (the hidden state passes straight through), else as a
  random semi-orthogonal map scaled to preserve norms.
GELU is the exact (erf) form, which the browser side implements the same way.
"""

import math

import torch
from torch import nn

W2_INIT_STD = 1e-3


def embedding_norm_stats(emb: torch.Tensor) -> dict:
    """Mean / std of the row norms of an embedding matrix [vocab, d] (stored in recursivelink.json too)."""
    norms = emb.detach().float().norm(dim=1)
    return {"mean": float(norms.mean()), "std": float(norms.std())}


def _set_out_scale(ln: nn.LayerNorm, target_norm: float | None):
    if target_norm is not None:
        with torch.no_grad():
            ln.weight.fill_(target_norm / math.sqrt(ln.normalized_shape[0]))
            ln.bias.zero_()


class InnerLink(nn.Module):
    kind = "inner"

    def __init__(self, d: int, width: int | None = None, target_norm: float | None = None):
        super().__init__()
        self.d_src = self.d_tgt = d
        self.width = width or d
        self.pre_ln = nn.LayerNorm(d)
        self.w1 = nn.Linear(d, self.width)
        self.w2 = nn.Linear(self.width, d)
        self.post_ln = nn.LayerNorm(d)
        nn.init.normal_(self.w2.weight, std=W2_INIT_STD)
        nn.init.zeros_(self.w2.bias)
        _set_out_scale(self.post_ln, target_norm)

    def forward(self, x):
        return self.post_ln(x + self.w2(nn.functional.gelu(self.w1(self.pre_ln(x)))))


class OuterLink(nn.Module):
    kind = "outer"

    def __init__(self, d_src: int, d_tgt: int, width: int | None = None, target_norm: float | None = None,
                 seed: int = 0):
        super().__init__()
        self.d_src, self.d_tgt = d_src, d_tgt
        self.width = width or 2 * d_tgt
        self.ln_src = nn.LayerNorm(d_src)
        self.w1 = nn.Linear(d_src, self.width)
        self.w2 = nn.Linear(self.width, d_tgt)
        self.w_res = nn.Linear(d_src, d_tgt, bias=False)
        self.ln_tgt = nn.LayerNorm(d_tgt)
        nn.init.normal_(self.w2.weight, std=W2_INIT_STD)
        nn.init.zeros_(self.w2.bias)
        with torch.no_grad():
            if d_src == d_tgt:
                self.w_res.weight.copy_(torch.eye(d_tgt))
            else:  # semi-orthogonal: keeps norms, seeded so the init is reproducible per link
                g = torch.Generator().manual_seed(seed)
                q, _ = torch.linalg.qr(torch.randn(max(d_src, d_tgt), min(d_src, d_tgt), generator=g))
                self.w_res.weight.copy_(q if d_tgt > d_src else q.T)
        _set_out_scale(self.ln_tgt, target_norm)

    def forward(self, x):
        return self.ln_tgt(self.w2(nn.functional.gelu(self.w1(self.ln_src(x)))) + self.w_res(x))


def expected_shapes(kind: str, d_src: int, d_tgt: int, width: int) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a link (the recursivelink.json loader checks files against this)."""
    if kind == "inner":
        d = d_src
        return {"pre_ln.weight": (d,), "pre_ln.bias": (d,), "w1.weight": (width, d), "w1.bias": (width,),
                "w2.weight": (d, width), "w2.bias": (d,), "post_ln.weight": (d,), "post_ln.bias": (d,)}
    return {"ln_src.weight": (d_src,), "ln_src.bias": (d_src,), "w1.weight": (width, d_src), "w1.bias": (width,),
            "w2.weight": (d_tgt, width), "w2.bias": (d_tgt,), "w_res.weight": (d_tgt, d_src),
            "ln_tgt.weight": (d_tgt,), "ln_tgt.bias": (d_tgt,)}


def make_link(kind: str, d_src: int, d_tgt: int, width: int | None = None, target_norm=None, seed: int = 0):
    if kind == "inner":
        return InnerLink(d_src, width, target_norm)
    return OuterLink(d_src, d_tgt, width, target_norm, seed)
