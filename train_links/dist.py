"""Data parallelism for train-links under `torchrun --nproc-per-node N` (torch.distributed: gloo on CPUs, nccl on
GPUs). Without torchrun every function here is the single-process identity.

Each rank runs its share of a step's rows (rows[rank::world]) through the frozen agents and the links; the
gradients of the links are summed over ranks (an all-reduce, what DistributedDataParallel does for a module, done
here by hand because one step calls the links from several agents' forwards). Every rank then takes the same
optimizer step on the same summed gradients, so the links stay identical everywhere without a broadcast.
"""

import os

import torch
import torch.distributed as tdist


def init() -> None:
    """Join the process group that torchrun describes in the environment (once; a no-op without torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def world() -> int:
    return tdist.get_world_size() if tdist.is_initialized() else 1


def rank() -> int:
    return tdist.get_rank() if tdist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def shard(items: list) -> list:
    """This rank's share of a list: every world-th item, starting at the rank."""
    return items[rank()::world()]


def sum_grads(params) -> None:
    """Sum every parameter's gradient over ranks (parameters without a gradient count as zeros)."""
    if world() == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        tdist.all_reduce(p.grad, op=tdist.ReduceOp.SUM)


def gather(items: list, fn) -> list:
    """[fn(x) for x in items], computed on the ranks' shards and put back in order on every rank."""
    mine = [fn(x) for x in shard(items)]
    if world() == 1:
        return mine
    parts: list = [None] * world()
    tdist.all_gather_object(parts, mine)
    out = [None] * len(items)
    for r, part in enumerate(parts):
        out[r::world()] = part
    return out


def barrier() -> None:
    if world() > 1:
        tdist.barrier()
