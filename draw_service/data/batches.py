"""From uint8 arrays to float batches: shuffling, dynamic binarisation, resumable positions.

Binarised MNIST, as in the paper's likelihood experiments (section 4.2):
- training batches are binarised dynamically: every time an image is drawn, each pixel is 1 with
  probability intensity/255, a fresh sample each epoch;
- evaluation images (the test split, or a validation split held out of the training images) are
  binarised once and for all: image i of a split is binarised with numpy's PCG64 seeded by
  (`TEST_BINARIZATION_SEED`, i), so every evaluation of every model, on any number of workers, sees
  the same binary images;
- other datasets are used as continuous intensities in [0, 1] (the Bernoulli likelihood of the paper
  then acts as a cross-entropy on intensities).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

TEST_BINARIZATION_SEED = 0


def binarize_fixed(images: np.ndarray, indices: np.ndarray | None = None,
                   seed: int = TEST_BINARIZATION_SEED) -> np.ndarray:
    """One fixed Bernoulli draw of `(N, C, H, W)` uint8 intensities → uint8 images of 0 and 255.

    `indices` are the images' positions in their split (default 0..N−1): the draw for an image depends
    on its index alone, not on which other images are binarised with it.
    """
    indices = np.arange(len(images)) if indices is None else indices
    u = np.stack([np.random.default_rng([seed, int(i)]).random(images.shape[1:], dtype=np.float32)
                  for i in indices]) if len(images) else np.zeros(images.shape, np.float32)
    return np.where(u < images.astype(np.float32) / 255.0, 255, 0).astype(np.uint8)


def to_float(images: Tensor) -> Tensor:
    return images.float().div_(255.0)


class BatchStream:
    """Minibatches of one worker's images, a pure function of (seed, step).

    Epoch e visits the images in the order `randperm(N, seed + e)`; the last partial batch of an epoch
    is dropped so every step has the same batch size on every worker. Because a batch depends only on
    the step number, a run resumed from a checkpoint at step s continues with exactly the batches an
    uninterrupted run would have seen.
    """

    def __init__(self, images: np.ndarray | Tensor, batch_size: int, seed: int = 0, binarize: bool = False):
        self.images = torch.as_tensor(images)  # (N, C, H, W) uint8, kept on the CPU
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if len(self.images) < batch_size:
            raise ValueError(f"this worker holds {len(self.images)} images, fewer than one batch of {batch_size}")
        self.batch_size, self.seed, self.binarize = batch_size, seed, binarize
        self.steps_per_epoch = len(self.images) // batch_size
        self._epoch, self._order = -1, None

    def batch(self, step: int) -> Tensor:
        """The float batch `(batch_size, C, H, W)` in [0, 1] for a global step, on the CPU (the loop moves it)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order, self._epoch = torch.randperm(len(self.images), generator=g), epoch
        idx = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        x = to_float(self.images[idx])
        if self.binarize:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_919 * step + 1)
            x = torch.bernoulli(x, generator=g)
        return x


def eval_batches(images: np.ndarray | Tensor, batch_size: int, device: torch.device | str = "cpu") -> Iterator[Tensor]:
    """The images in order, as float batches (the last one may be smaller)."""
    images = torch.as_tensor(images)
    for i in range(0, len(images), batch_size):
        yield to_float(images[i : i + batch_size]).to(device, non_blocking=True)
