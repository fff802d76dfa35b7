"""The CUDA-graph step under DDP, on what a CPU can run: two gloo ranks go through the warm-up that comes
before a capture (DDP's 11 iterations, all-reduce included) and come out exactly where they started, so
the first real step equals that of ranks that never warmed up. The capture itself is checked on a GPU
(tests/unit/test_fast_paths.py, and the closing note's H100 run when one is lent)."""

import contextlib
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny import tiny

from draw_service.model import DRAW
from draw_service.train.step import EagerStep, GraphedStep, warm_up_and_restore

CFG = tiny(T=3, enc_size=16, z_size=4, read_n=2, write_n=3)
SHAPE = (1, 12, 12)


def _rank(rank: int, world: int, port: int, results) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(100 + rank)  # every rank its own batch, as in training
    x = torch.bernoulli(torch.rand(6, *SHAPE, generator=g))
    eps = torch.randn(CFG.T, 6, CFG.z_size, generator=g)
    steps = []
    for warm in (True, False):
        torch.manual_seed(0)
        net = torch.nn.parallel.DistributedDataParallel(DRAW(CFG, SHAPE))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        step = EagerStep(net, opt, grad_clip=1.0, bf16=False)
        if warm:
            before = [p.detach().clone() for p in step.params]
            warm_up_and_restore(lambda step=step: step._run(x, eps), step.params, opt, GraphedStep.DDP_WARMUP,
                                contextlib.nullcontext())
            assert all(torch.equal(a, p) for a, p in zip(before, step.params)), "the warm-up left weights changed"
        loss = step(x, eps)[0]
        steps.append((float(loss), [p.detach().clone() for p in step.params]))
    (loss_w, params_w), (loss_c, params_c) = steps
    results[rank] = (loss_w == loss_c and all(torch.equal(a, b) for a, b in zip(params_w, params_c)),
                     [p.sum().item() for p in params_w])
    dist.destroy_process_group()


def test_the_warm_up_before_a_ddp_capture_leaves_no_trace():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(2, port, results), nprocs=2, join=True)
        (same0, sums0), (same1, sums1) = results[0], results[1]
    assert same0 and same1  # each rank's first real step is the step of ranks that never warmed up
    assert sums0 == sums1  # and DDP kept the two ranks' weights identical
