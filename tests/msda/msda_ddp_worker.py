"""Worker for test_distributed.py: one rank of a 2-process gloo data-parallel training step.

Usage: python msda_ddp_worker.py RANK WORLD_SIZE PORT OUT_FILE
"""

from __future__ import annotations

import sys

import torch
from npu_ops.msda import MultiScaleDeformableAttention

LEVELS = [(5, 4), (3, 2)]
BATCH, QUERIES, EMBED, HEADS, POINTS = 4, 6, 16, 2, 2


def build_model() -> MultiScaleDeformableAttention:
    torch.manual_seed(0)
    model = MultiScaleDeformableAttention(
        embed_dims=EMBED, num_heads=HEADS, num_levels=len(LEVELS), num_points=POINTS, batch_first=True, dropout=0.0
    ).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random weights so that the offsets depend on the queries
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model


def build_batch():
    gen = torch.Generator().manual_seed(2)
    shapes = torch.tensor(LEVELS)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    num_keys = int(shapes.prod(1).sum())
    query = torch.randn(BATCH, QUERIES, EMBED, generator=gen, dtype=torch.float64)
    value = torch.randn(BATCH, num_keys, EMBED, generator=gen, dtype=torch.float64)
    ref = torch.rand(BATCH, QUERIES, len(LEVELS), 2, generator=gen, dtype=torch.float64)
    return query, value, ref, shapes, starts


def loss_fn(model, query, value, ref, shapes, starts) -> torch.Tensor:
    out = model(query, value=value, reference_points=ref, spatial_shapes=shapes, level_start_index=starts)
    return out.square().mean()  # mean over the batch (and the rest)


def main() -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world, port, out_file = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = DistributedDataParallel(build_model())
        query, value, ref, shapes, starts = build_batch()
        per_rank = BATCH // world
        sl = slice(rank * per_rank, (rank + 1) * per_rank)
        loss = loss_fn(model, query[sl], value[sl], ref[sl], shapes, starts)
        loss.backward()
        grads = {n.removeprefix("module."): p.grad.detach().clone() for n, p in model.named_parameters()}
        # One SGD step: parameters must stay identical across ranks.
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        params = {n.removeprefix("module."): p.detach().clone() for n, p in model.named_parameters()}
        dist.barrier()
        torch.save({"rank": rank, "loss": loss.item(), "grads": grads, "params": params}, out_file)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
