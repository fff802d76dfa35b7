"""One model on one replica, batched: concurrent /sample requests gathered by `@serve.batch` into one
decoder pass whatever their sizes, /score requests into one encoder pass. Each request's noise comes from
its own seed, so a seed gives the same answer batched or alone, and the same images as
`draw-service sample --seed`. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import collections
import math
from typing import Any

import torch
from ray import serve

from ..device import autocast
from ..model import DRAW
from ..model.cuda_graph_decoder import GraphedDecoder
from ..model.likelihood import bits_per_dim
from .config import ServeSettings

DEFAULTS = ServeSettings()  # the batch limits a replica starts with, until its user_config arrives


class ModelRunner:
    def __init__(self, model: DRAW, device: torch.device, precision: str = "fp32"):
        self.model, self.device, self.precision = model, device, precision  # precision: the decoder's
        self.shape = tuple(model.image_shape)
        self.dims = math.prod(self.shape)
        # On a GPU, decoding replays CUDA graphs (launches, not maths, dominate small decodes there).
        self.graphed = GraphedDecoder(model) if device.type == "cuda" else None
        self.stats: dict[str, Any] = {"requests": 0, "images": 0, "batches": 0, "largest_batch": 0,
                                      "batch_sizes": collections.Counter(), "scored": 0}

    def set_batching(self, settings: ServeSettings) -> None:
        for batch in (self.decode_batch, self.score_batch):
            batch.set_max_batch_size(settings.max_batch_size)
            batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    def latents(self, n: int, seed: int, temperature: float) -> torch.Tensor:
        """The request's own latents (T, n, z): the same seed gives the same images as `draw-service sample`."""
        return self.model.prior_latents(n, seed, temperature)

    @torch.inference_mode()
    def _decode(self, eps: torch.Tensor) -> torch.Tensor:
        eps = eps.to(self.device)
        with autocast(self.device, self.precision):  # a CUDA graph captures it on its first call
            images = self.graphed(eps) if self.graphed is not None else self.model.decode(eps)[0]
        return images.float().cpu()

    def _count(self, sizes: list[int]) -> None:
        self.stats["batches"] += 1
        self.stats["requests"] += len(sizes)
        self.stats["images"] += sum(sizes)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(sizes))
        self.stats["batch_sizes"][len(sizes)] += 1

    @serve.batch(max_batch_size=DEFAULTS.max_batch_size, batch_wait_timeout_s=DEFAULTS.batch_wait_timeout_s)
    async def decode_batch(self, jobs: list[tuple[int, int, float]]) -> list[torch.Tensor]:
        """Images `(n, C, H, W)` for each job (n, seed, temperature)."""
        eps = torch.cat([self.latents(*job) for job in jobs], dim=1)  # (T, Σn, z)
        # Decode off the event loop, so requests keep arriving (and the next batch fills) meanwhile.
        images = await asyncio.get_running_loop().run_in_executor(None, self._decode, eps)
        sizes = [n for n, _, _ in jobs]
        self._count(sizes)
        return list(images.split(sizes))

    @torch.inference_mode()
    def _score(self, jobs: list[tuple[torch.Tensor, int, int]]) -> list[list[dict[str, float]]]:
        """One encoder pass for every job's images: n rows for the bound, k·n more for the IWAE bound."""
        cfg = self.model.config
        rows, noise = [], []
        for x, k, seed in jobs:
            g = torch.Generator().manual_seed(seed)
            batch = torch.cat([x, x.repeat(k, 1, 1, 1)]) if k else x  # sample i of image j at n + i·n + j
            rows.append(batch)
            noise.append(torch.randn(cfg.T, len(batch), cfg.z_size, generator=g))
        out = self.model(torch.cat(rows).to(self.device), torch.cat(noise, 1).to(self.device))
        loss, log_w = out.loss.double().cpu(), out.log_weight().double().cpu()
        answers, start = [], 0
        for x, k, _ in jobs:
            n = len(x)
            nll = loss[start:start + n]
            scores = [{"nll_bound": float(v), "bits_per_dim": bits_per_dim(float(v), self.dims)} for v in nll]
            if k:
                w = log_w[start + n:start + n + k * n].view(k, n)
                iwae = -(torch.logsumexp(w, 0) - math.log(k))
                for s, v in zip(scores, iwae):
                    s.update({"iwae_bound": float(v), "iwae_bits_per_dim": bits_per_dim(float(v), self.dims)})
            answers.append(scores)
            start += n * (k + 1)
        return answers

    @serve.batch(max_batch_size=DEFAULTS.max_batch_size, batch_wait_timeout_s=DEFAULTS.batch_wait_timeout_s)
    async def score_batch(self, jobs: list[tuple[torch.Tensor, int, int]]) -> list[list[dict[str, float]]]:
        """Per-image bounds for each job (images, importance samples k, seed)."""
        answers = await asyncio.get_running_loop().run_in_executor(None, self._score, jobs)
        self.stats["scored"] += sum(len(x) for x, _, _ in jobs)
        return answers

    def animate(self, eps: torch.Tensor):
        """The record of decoding `eps` (for a GIF)."""
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.model.decode(eps.to(self.device), record=True)[1]

    def reconstruct(self, x: torch.Tensor, seed: int):
        """The record of reconstructing `x` with posterior noise from `seed`."""
        cfg = self.model.config
        eps = torch.randn(cfg.T, len(x), cfg.z_size, generator=torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            return self.model(x.to(self.device), eps.to(self.device), record=True).record
