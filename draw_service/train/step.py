"""The training step, eager or captured once as a CUDA graph and replayed.

At the paper's batch of 100 a GPU spends most of a DRAW step waiting for the CPU to launch the
T × (forward + backward) small kernels. Capturing the whole step — forward over the T drawing steps,
backward (with DDP's gradient all-reduce), gradient clipping and Adam — as one CUDA graph removes that:
each replay is one launch.
The graph reads its batch and noise from fixed buffers, so a replay computes exactly what the eager
step computes on the same inputs (tests/unit/test_fast_paths.py checks it on a GPU).

Both kinds take `(x, eps)` and return the step's `(loss, recon, kl, grad_norm)` as 0-d tensors on the
device, `loss` the whole bound recon + kl whatever the objective's KL weight; `set_lr` and `set_kl_weight`
set the learning rate and the KL term's weight of the next step (schedules).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..device import autocast


class EagerStep:
    """One optimiser step as plain PyTorch: works on every device, with DDP and with torch.compile."""

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float, bf16: bool):
        self.net, self.optimizer = net, optimizer
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.clip = grad_clip if grad_clip > 0 else math.inf
        self.bf16 = bf16
        self.kl_weight: float | Tensor = 1.0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def set_kl_weight(self, weight: float) -> None:
        self.kl_weight = weight

    def _run(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        with autocast(x.device, "bf16" if self.bf16 else "fp32"):
            out = self.net(x, eps)
            recon, kl = out.recon.mean(), out.kl.mean()
        (recon + self.kl_weight * kl).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        return (recon + kl).detach(), recon.detach(), kl.detach(), grad_norm

    def __call__(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        return self._run(x, eps)


def warm_up_and_restore(run: Callable[[], object], params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                        steps: int, stream: contextlib.AbstractContextManager) -> None:
    """Run `steps` optimiser steps (`run`) inside `stream`, then put the weights and the optimiser's state
    back in place, so the training run never sees them: what a capture needs first (cuBLAS workspaces,
    Adam's state, DDP's buckets), at no cost to the run's numbers."""
    saved_params = [p.detach().clone() for p in params]
    saved_state = {p: {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    with stream:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            run()
    with torch.no_grad():
        for p, saved in zip(params, saved_params):
            p.copy_(saved)
        for p, state in optimizer.state.items():
            for k, v in state.items():
                # in place: a graph must keep pointing at these very tensors
                v.copy_(saved_state[p][k]) if p in saved_state else v.zero_()


class GraphedStep(EagerStep):
    """The same step captured as a CUDA graph on first use (fixed batch shape), one GPU or several.

    Capturing needs a few warm-up steps first; they run on a copy of the training state that is put back
    afterwards (`warm_up_and_restore`), so the run's numbers are those of the eager step from the first
    real batch on. Under DistributedDataParallel the gradient all-reduce is captured too, as PyTorch
    supports it: DDP built on a side stream (`on_ray.py` does), NCCL's asynchronous error handling off
    before the process group starts, and at least 11 eager DDP iterations before the capture.
    """

    DDP_WARMUP = 11  # DDP's own requirement before a full-backward capture

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float, bf16: bool,
                 warmup: int = 3):
        super().__init__(net, optimizer, grad_clip, bf16)
        device = self.params[0].device
        if device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, but this run trains on {device}")
        self.ddp = isinstance(net, torch.nn.parallel.DistributedDataParallel)
        self.warmup = max(warmup, self.DDP_WARMUP) if self.ddp else warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        for group in optimizer.param_groups:
            group["capturable"] = True  # Adam keeps its step count on the GPU, so the graph can advance it
            # A tensor learning rate: the graph reads it at every replay, so a schedule can change it.
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
        for state in optimizer.state.values():
            if "step" in state:
                state["step"] = state["step"].to(device, torch.float32)
        self.kl_weight = torch.ones((), device=device)  # a tensor, read at every replay, like the learning rate

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"].fill_(lr)

    def set_kl_weight(self, weight: float) -> None:
        self.kl_weight.fill_(weight)

    def _capture(self, x: Tensor, eps: Tensor) -> None:
        self.x, self.eps = x.clone(), eps.clone()  # the graph's input buffers (B, C, H, W), (T, B, z)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        warm_up_and_restore(lambda: self._run(self.x, self.eps), self.params, self.optimizer, self.warmup,
                            torch.cuda.stream(side))
        torch.cuda.current_stream().wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)  # gradients are allocated inside the graph's memory pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = self._run(self.x, self.eps)

    def __call__(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self.graph is None:
            self._capture(x, eps)
        elif x.shape != self.x.shape:
            raise ValueError(f"a CUDA graph replays one batch shape: captured {tuple(self.x.shape)}, got "
                             f"{tuple(x.shape)}")
        self.x.copy_(x, non_blocking=True)
        self.eps.copy_(eps, non_blocking=True)
        self.graph.replay()
        # Clones: the next replay overwrites the graph's outputs in place.
        return tuple(t.clone() for t in self.outputs)  # type: ignore[return-value]
