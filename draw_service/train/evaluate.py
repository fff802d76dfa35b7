"""The paper's metric and a tighter one, in nats per image.

- NLL bound (the paper's): the negative ELBO with one posterior sample per image, averaged over the
  split: recon + KL. It upper-bounds −log p(x) in expectation.
- Importance-weighted bound (Burda et al., 2016) with k samples: −log (1/k) Σ_i p(x, z_i)/q(z_i|x),
  tighter than the ELBO for k > 1 and equal to it in expectation for k = 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data.batches import eval_batches
from ..model import DRAW


@torch.no_grad()
def bound_sums(model: DRAW, images: np.ndarray, batch_size: int = 500, iw_samples: int = 0, seed: int = 0,
               device: torch.device | str = "cpu", progress=None) -> dict[str, float]:
    """Sums over `images` `(N, C, H, W)` uint8 of the per-image bounds, so workers can add theirs up.

    Returns `count`, `nll` (ELBO bound), `recon`, `kl`, and with `iw_samples` k > 0 also `iwae`.
    """
    device = torch.device(device)
    g = torch.Generator(device).manual_seed(seed)
    sums = {"count": 0.0, "nll": 0.0, "recon": 0.0, "kl": 0.0}
    if iw_samples:
        sums["iwae"] = 0.0
    was_training = model.training
    model.eval()
    k = max(iw_samples, 1)
    for x in eval_batches(images, max(1, batch_size // k) if iw_samples else batch_size, device):
        out = model(x, generator=g)
        sums["count"] += len(x)
        sums["nll"] += out.loss.sum().item()
        sums["recon"] += out.recon.sum().item()
        sums["kl"] += out.kl.sum().item()
        if iw_samples:
            out_k = model(x.repeat(k, 1, 1, 1), generator=g)  # (k·B) rows, sample i of image j at i·B + j
            log_w = out_k.log_weight().view(k, len(x))
            sums["iwae"] += -(torch.logsumexp(log_w, 0) - math.log(k)).sum().item()
        if progress is not None:
            progress.update(len(x))
    model.train(was_training)
    return sums


def bounds_from_sums(sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["count"], 1.0)
    out = {"nll_bound": sums["nll"] / n, "recon": sums["recon"] / n, "kl": sums["kl"] / n, "count": int(sums["count"])}
    if "iwae" in sums:
        out["iwae_bound"] = sums["iwae"] / n
    return out
