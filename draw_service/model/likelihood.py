"""p(x | c_T): how the final canvas scores an image, as −log p in nats per image.

- bernoulli (the paper's, section 2.2): pixel values in [0, 1] are the probabilities of binary pixels,
  p = σ(c_T); −log p is the binary cross-entropy summed over pixels. A likelihood for binarised images;
  on 8-bit images it is a cross-entropy, not a likelihood of the data.
- logistic: a discretised logistic per sub-pixel (Kingma et al., 2016; Salimans et al., 2017), for
  8-bit images. The 256 values v = k/255 each get the mass of their bin [v − 1/510, v + 1/510] under a
  logistic with mean σ(c_T) and a learned scale s (one per sub-pixel), the two outer bins taking the
  tails, so the probabilities of the 256 values sum to one: a true likelihood, in nats or bits/dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

HALF_BIN = 1 / 510  # half the distance between neighbouring 8-bit values in [0, 1]
MIN_LOG_SCALE = -8.0  # s ≥ e⁻⁸ ≈ 3e-4, a sixth of a bin: 99% of the mass on one value is enough
MAX_LOG_SCALE = 5.0  # s ≤ e⁵ ≈ 150: far flatter than useful, and keeps e^(l−u) below 1 in floating point
INIT_LOG_SCALE = -2.0  # s ≈ 0.14: about the spread of natural-image pixels around a blurry mean


def bernoulli_nll(canvas: Tensor, x: Tensor) -> Tensor:
    """−log p(x | c) for canvas logits `(B, C, H, W)` and pixel values `x` in [0, 1] → `(B,)` nats."""
    return F.binary_cross_entropy_with_logits(canvas, x, reduction="none").flatten(1).sum(1)


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) per sub-pixel for 8-bit values `x` = k/255, under a logistic(mean, e^log_scale) binned
    at the 256 values; elementwise, any broadcastable shapes."""
    log_scale = log_scale.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)
    inv_s = torch.exp(-log_scale)
    centred = x - mean
    upper = inv_s * (centred + HALF_BIN)
    lower = inv_s * (centred - HALF_BIN)
    log_cdf_upper = upper - F.softplus(upper)  # log σ(upper): the first bin takes the left tail
    log_sf_lower = -F.softplus(lower)  # log(1 − σ(lower)): the last bin takes the right tail
    # log(σ(u) − σ(l)), written to stay exact when both are near 0 or near 1:
    #   σ(u) − σ(l) = σ(u)·(1 − σ(l)) · (1 − e^{l−u})
    log_mass = (upper - F.softplus(upper)) - F.softplus(lower) + _log1mexp(lower - upper)
    return torch.where(x < HALF_BIN, log_cdf_upper, torch.where(x > 1 - HALF_BIN, log_sf_lower, log_mass))


def _log1mexp(a: Tensor) -> Tensor:
    """log(1 − e^a) for a < 0, accurate for a near 0 and very negative a alike (Mächler, 2012)."""
    near = a > -math.log(2)
    # Each branch sees only its own domain, so the branch not taken cannot put inf or NaN into gradients.
    return torch.where(near, torch.log(-torch.expm1(torch.where(near, a, -1.0))),
                       torch.log1p(-torch.exp(torch.where(near, -1.0, a))))


def logistic_nll(canvas: Tensor, log_scale: Tensor, x: Tensor) -> Tensor:
    """−log p(x | c) for canvas logits `(B, C, H, W)`, log-scales `(C, H, W)` and 8-bit values `x` in [0, 1]
    → `(B,)` nats."""
    return -discretized_logistic_log_prob(x, torch.sigmoid(canvas), log_scale).flatten(1).sum(1)


def bits_per_dim(nats: float, dims: int) -> float:
    """Nats per image → bits per sub-pixel, the measure the literature reports for images."""
    return nats / (dims * math.log(2))
