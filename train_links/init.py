"""Closed-form starts for the links, so an untrained link file is already sensible.

Outer link (src -> dst): its residual path W_res is the ridge regression from the sender's last-layer hidden
states to the receiver's input embeddings of the next token, W = (A^T A + lam I)^-1 A^T B, on pairs over the
sender's own turns (train.inner_pairs). When the two agents share a tokenizer the pairs are per position;
otherwise per text, mean-pooled. The MLP branch starts near zero (links.W2_INIT_STD), and the final LayerNorm's
gain puts the output at the receiver's mean embedding norm. A random start cost a public RecursiveMAS
reproduction about 12 points; this one needs no training to carry the text's content across.

Inner link: LatentMAS's training-free realignment is M = (W_out^T W_out + lam I)^-1 W_out^T W_in, output rescaled
to the mean input-embedding norm. With tied embeddings (W_out = W_in: SmolLM2, Qwen3-0.6B, Gemma 3) M is the
identity, which is the InnerLink's own start (identity residual, W2 ~ 0, post-LN gain at the embedding norm), so
nothing is fitted. The link's form (LayerNorm before the MLP branch) cannot hold an untied model's M exactly;
those start the same way and rely on the inner loop.
"""

import torch

from .links import OuterLink

RIDGE = 1e-4  # lambda, relative to the mean diagonal of A^T A


def ridge(a: torch.Tensor, b: torch.Tensor, lam: float = RIDGE) -> torch.Tensor:
    """W [d_a, d_b] minimising |A W - B|^2 + lam * mean(diag(A^T A)) * |W|^2, in float64."""
    a, b = a.double(), b.double()
    gram = a.T @ a
    reg = lam * gram.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    return torch.linalg.solve(gram + reg * eye, a.T @ b)


def same_tokenizer(src, dst) -> bool:
    return src.tokenizer is dst.tokenizer or src.tokenizer.get_vocab() == dst.tokenizer.get_vocab()


@torch.no_grad()
def init_outer(link: OuterLink, src, dst, src_pairs, src_rows: list[dict] | None = None):
    """Fit link.w_res from `src_pairs` (train.Pairs of the sender). Different tokenizers: mean-pooled per text
    over `src_rows` (the rows the pairs came from)."""
    if same_tokenizer(src, dst):
        a, b = src_pairs.h, dst.embed(src_pairs.ids).float()
    else:
        from .train import inner_pairs

        a_rows, b_rows = [], []
        for row in src_rows or []:
            p = inner_pairs(src, [row])
            text = row.get(src.role.target) or row["answer"]
            a_rows.append(p.h.mean(0))
            b_rows.append(dst.embed(dst.encode(text)).float().mean(0))
        a, b = torch.stack(a_rows), torch.stack(b_rows)
    w = ridge(a, b)  # [d_src, d_dst]
    link.w_res.weight.copy_(w.T.float())
