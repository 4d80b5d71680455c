"""Two-process gloo data-parallel training step of MultiScaleDeformableAttention (DDP)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import msda_ddp_worker as worker
import torch

WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("NPU_OPS_CPU_CAPABILITY", None)
    port = _free_port()
    files = [tmp_path / f"rank{r}.pt" for r in range(WORLD)]
    procs = [
        subprocess.Popen(
            [sys.executable, worker.__file__, str(r), str(WORLD), str(port), str(files[r])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(WORLD)
    ]
    logs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=90)
            logs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return procs, logs, files


def test_ddp_two_ranks_match_single_process(tmp_path):
    procs, logs, files = _launch(tmp_path)
    for r, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {r} failed:\n{log[-3000:]}"
    results = [torch.load(f) for f in files]

    # Single process, whole batch, loss = mean over the batch.
    model = worker.build_model()
    query, value, ref, shapes, starts = worker.build_batch()
    loss = worker.loss_fn(model, query, value, ref, shapes, starts)
    loss.backward()
    expected = {n: p.grad for n, p in model.named_parameters()}
    stepped = {n: (p - 0.1 * p.grad).detach() for n, p in model.named_parameters()}

    # The two half-batch losses average to the full-batch loss.
    torch.testing.assert_close(sum(r["loss"] for r in results) / WORLD, loss.item(), atol=1e-12, rtol=1e-12)
    for res in results:
        assert set(res["grads"]) == set(expected)
        for name, g in expected.items():
            torch.testing.assert_close(
                res["grads"][name], g, atol=1e-12, rtol=1e-10, msg=lambda m, n=name, r=res["rank"]: f"rank {r} {n}: {m}"
            )
            torch.testing.assert_close(res["params"][name], stepped[name], atol=1e-12, rtol=1e-10)
    # Ranks agree bit for bit after the all-reduce.
    for name in expected:
        assert torch.equal(results[0]["grads"][name], results[1]["grads"][name]), name
