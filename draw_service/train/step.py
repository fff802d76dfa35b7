"""The training step, eager or captured once as a CUDA graph and replayed.

At the paper's batch of 100 a GPU spends most of a DRAW step waiting for the CPU to launch the
T × (forward + backward) small kernels. Capturing the whole step — forward over the T drawing steps,
backward, gradient clipping and Adam — as one CUDA graph removes that: each replay is one launch.
The graph reads its batch and noise from fixed buffers, so a replay computes exactly what the eager
step computes on the same inputs (tests/test_fast_paths.py checks it on a GPU).

Both kinds take `(x, eps)` and return the step's `(loss, recon, kl, grad_norm)` as 0-d tensors on the
device; `set_lr` sets the learning rate of the next step (a schedule).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor


class EagerStep:
    """One optimiser step as plain PyTorch: works on every device, with DDP and with torch.compile."""

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float, bf16: bool):
        self.net, self.optimizer = net, optimizer
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.clip = grad_clip if grad_clip > 0 else math.inf
        self.bf16 = bf16

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        # Autocast's weight-cast cache must be off inside a CUDA graph capture; it costs little elsewhere.
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False)

    def _run(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        with self.autocast(x.device.type):
            out = self.net(x, eps)
            loss = out.loss.mean()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        return loss.detach(), out.recon.mean().detach(), out.kl.mean().detach(), grad_norm

    def __call__(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        return self._run(x, eps)


class GraphedStep(EagerStep):
    """The same step captured as a CUDA graph on first use (one GPU, fixed batch shape).

    Capturing needs a few warm-up steps first (cuBLAS workspaces, Adam's state, torch.compile); they
    run on a copy of the training state that is put back afterwards, so the run's numbers are those
    of the eager step from the first real batch on.
    """

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float, bf16: bool,
                 warmup: int = 3):
        super().__init__(net, optimizer, grad_clip, bf16)
        if self.params[0].device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, but this run trains on {self.params[0].device}")
        if isinstance(net, torch.nn.parallel.DistributedDataParallel):
            raise ValueError("cuda_graphs captures a single-GPU step: train with one worker, or turn cuda_graphs off")
        self.warmup = warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        device = self.params[0].device
        for group in optimizer.param_groups:
            group["capturable"] = True  # Adam keeps its step count on the GPU, so the graph can advance it
            # A tensor learning rate: the graph reads it at every replay, so a schedule can change it.
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
        for state in optimizer.state.values():
            if "step" in state:
                state["step"] = state["step"].to(device, torch.float32)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"].fill_(lr)

    def _capture(self, x: Tensor, eps: Tensor) -> None:
        self.x, self.eps = x.clone(), eps.clone()  # the graph's input buffers (B, C, H, W), (T, B, z)
        # Keep the true training state: warm-up steps move weights and moments that the run must not see.
        saved_params = [p.detach().clone() for p in self.params]
        saved_state = {p: {k: v.clone() for k, v in s.items()} for p, s in self.optimizer.state.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.optimizer.zero_grad(set_to_none=True)
                self._run(self.x, self.eps)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for p, saved in zip(self.params, saved_params):
                p.copy_(saved)
            for p, state in self.optimizer.state.items():
                for k, v in state.items():
                    # in place: the graph must keep pointing at these very tensors
                    v.copy_(saved_state[p][k]) if p in saved_state else v.zero_()
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
