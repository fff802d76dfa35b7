"""Generation on a GPU as replayed CUDA graphs.

The step-by-step decode (`DRAW.decode_stepwise`) is T small steps; on a GPU at serving batch sizes their
kernel launches, not the maths, set the time. `GraphedDecoder` captures that whole decode once per
batch-size bucket (powers of two) and replays it, padding a batch up to its bucket; images are the same
as `DRAW.decode`'s (each image's latents are its own row, so padding changes nothing but float noise in
the matrix products).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .draw import DRAW


class GraphedDecoder:
    def __init__(self, model: DRAW):
        if next(model.parameters()).device.type != "cuda":
            raise ValueError("GraphedDecoder needs the model on a CUDA device")
        self.model = model
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}  # bucket → graph, eps, images

    @staticmethod
    def bucket(n: int) -> int:
        return 1 << (n - 1).bit_length()

    @torch.inference_mode()
    def _capture(self, b: int) -> None:
        cfg = self.model.config
        eps = torch.zeros(cfg.T, b, cfg.z_size, device=next(self.model.parameters()).device)  # (T, b, z)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture: cuBLAS handles and workspaces
            for _ in range(2):
                self.model.decode_stepwise(eps)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a Serve replica may decode eagerly (/animate) on another thread meanwhile
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            images, _ = self.model.decode_stepwise(eps)
        self._graphs[b] = (graph, eps, images)

    @torch.inference_mode()
    def __call__(self, eps: Tensor) -> Tensor:
        """Images `(n, C, H, W)` in [0, 1] from latents `eps` `(T, n, z)` on the model's device."""
        self.model.check_latents(eps)
        n = eps.shape[1]
        b = self.bucket(n)
        if b not in self._graphs:
            self._capture(b)
        graph, eps_in, images = self._graphs[b]
        eps_in.zero_()
        eps_in[:, :n].copy_(eps)
        graph.replay()
        return images[:n].clone()
