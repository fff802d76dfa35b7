"""p(x | c_T): how the final canvas scores an image, as −log p in nats per image.

The canvas c_T holds, per pixel, whatever the likelihood needs: the decoder writes all of it with the same
write operation (with attention, the write patch carries every canvas channel). Its first use is the image
the canvas shows, `mean(canvas)`, which the encoder's error image x̂ = x − mean(c_{t−1}) and every picture read.

- bernoulli (the paper's, section 2.2): C canvas channels, p = σ(c_T) per pixel; −log p is the binary
  cross-entropy summed over pixels. A likelihood for binarised images; on 8-bit images it is a
  cross-entropy, not a likelihood of the data.
- logistic: a discretised logistic per sub-pixel (Kingma et al., 2016; Salimans et al., 2017), for 8-bit
  images. C canvas channels give the mean σ(c_T); the scale is one learned number per sub-pixel, the same
  for every image (`log_scale`, `(C, H, W)`).
- logistic-scale: the same logistic with the scale drawn too: 2C canvas channels, [mean logits | log-scale],
  log s = c_T's scale channel + the learned per-sub-pixel offset, so each image says where it is sure.
- logistic-mixture: K discretised logistics per pixel with PixelCNN++'s linear colour coupling (Salimans et
  al., 2017, section 2.2): component k draws r, then g with mean μ_g + α r, then b with mean
  μ_b + β r + γ g, so p(x) = Σ_k π_k p_k(r) p_k(g | r) p_k(b | r, g). Canvas channels, in order:
  [mixture logits K | mean logits K·C | log-scales K·C | coupling K·C(C−1)/2], the coupling through tanh.

Each of the discrete ones gives the 256 values v = k/255 the mass of their bin [v − 1/510, v + 1/510], the two
outer bins taking the tails, so the probabilities sum to one: a true likelihood, in nats or bits/dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

NAMES = ("bernoulli", "logistic", "logistic-scale", "logistic-mixture")
HALF_BIN = 1 / 510  # half the distance between neighbouring 8-bit values in [0, 1]
MIN_LOG_SCALE = -8.0  # s ≥ e⁻⁸ ≈ 3e-4, a sixth of a bin: 99% of the mass on one value is enough
MAX_LOG_SCALE = 5.0  # s ≤ e⁵ ≈ 150: far flatter than useful, and keeps e^(l−u) below 1 in floating point
INIT_LOG_SCALE = -2.0  # s ≈ 0.14: about the spread of natural-image pixels around a blurry mean


def coupling_pairs(channels: int) -> list[tuple[int, int]]:
    """(channel, earlier channel) pairs of the colour coupling, in canvas order: (1,0), (2,0), (2,1) for RGB."""
    return [(c, j) for c in range(channels) for j in range(c)]


def canvas_channels(name: str, channels: int, mixtures: int) -> int:
    """Canvas channels the likelihood `name` needs for images of `channels` channels."""
    if name in ("bernoulli", "logistic"):
        return channels
    if name == "logistic-scale":
        return 2 * channels
    if name == "logistic-mixture":
        return mixtures * (1 + 2 * channels + len(coupling_pairs(channels)))
    raise ValueError(f"unknown likelihood {name!r}; choose from {', '.join(NAMES)}")


def scale_channels(name: str, channels: int, mixtures: int) -> int:
    """Channels of the learned per-sub-pixel log-scale offset `(·, H, W)`: 0 where there is none."""
    return {"bernoulli": 0, "logistic": channels, "logistic-scale": channels,
            "logistic-mixture": mixtures * channels}[name]


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
    log_mass = log_cdf_upper + log_sf_lower + _log1mexp(lower - upper)
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


class Likelihood:
    """p(x | c_T) for images of `channels` channels: the canvas layout, the image it shows, −log p.

    Holds no parameters: the learned log-scale offset lives on the model (`DRAW.log_scale`, a checkpoint's
    `log_scale`) and is passed in.
    """

    def __init__(self, name: str, channels: int, mixtures: int = 1):
        self.name, self.C, self.K = name, channels, mixtures
        self.canvas_channels = canvas_channels(name, channels, mixtures)
        self.scale_channels = scale_channels(name, channels, mixtures)
        self._pairs = coupling_pairs(channels)

    def _mixture(self, canvas: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The mixture canvas `(B, P, H, W)` → logits `(B, K, H, W)`, mean logits and log-scale deltas
        `(B, K, C, H, W)` and coupling pre-activations `(B, K, C(C−1)/2, H, W)`."""
        K, C = self.K, self.C
        B, _, H, W = canvas.shape
        logits, means, scales, coupling = canvas.split([K, K * C, K * C, K * len(self._pairs)], 1)
        return (logits, means.view(B, K, C, H, W), scales.view(B, K, C, H, W),
                coupling.view(B, K, len(self._pairs), H, W))

    def _coupled(self, base: Tensor, coupling: Tensor, given: Tensor | None = None) -> list[Tensor]:
        """Each channel's component means `(B, K, H, W)`: σ(mean logit) `base[:, :, c]` plus Σ_{j<c} tanh(a_cj)·x_j,
        where x_j is `given`'s channel j (the true colours, `(B, C, H, W)`) or, without it, the component's own
        expected value of channel j (for the image the canvas shows). Channel by channel, never one stacked
        `(B, K, C, H, W)`: its copies would cost more than the arithmetic."""
        coef = torch.tanh(coupling)
        out: list[Tensor] = []
        for c in range(self.C):
            m = base[:, :, c]
            for i, (cc, j) in enumerate(self._pairs):
                if cc == c:
                    m = m + coef[:, :, i] * (out[j] if given is None else given[:, j : j + 1])
            # the expected value of a channel's outer bins folds back into [0, 1]: clamp before it couples on
            out.append(m if given is not None else m.clamp(0, 1))
        return out

    def mean(self, canvas: Tensor) -> Tensor:
        """The image the canvas `(B, P, H, W)` shows, `(B, C, H, W)` in [0, 1]: the expected value of x (for the
        mixture, exactly so where its components' means sit inside [0, 1]; each is clamped there)."""
        if self.name in ("bernoulli", "logistic"):
            return torch.sigmoid(canvas)
        if self.name == "logistic-scale":
            return torch.sigmoid(canvas[:, : self.C])
        logits, means, _, coupling = self._mixture(canvas)
        pi = torch.softmax(logits, 1)  # (B, K, H, W)
        return torch.stack([(pi * m).sum(1) for m in self._coupled(torch.sigmoid(means), coupling)], 1)

    def nll(self, canvas: Tensor, log_scale: Tensor | None, x: Tensor) -> Tensor:
        """−log p(x | c) per image `(B,)` in nats, for the canvas `(B, P, H, W)`, the learned log-scale offset
        `(scale channels, H, W)` (None for bernoulli) and pixel values `x` `(B, C, H, W)`."""
        if self.name == "bernoulli":
            return bernoulli_nll(canvas, x)
        if self.name == "logistic":
            return logistic_nll(canvas, log_scale, x)
        if self.name == "logistic-scale":
            mean, scale = canvas.split([self.C, self.C], 1)
            return -discretized_logistic_log_prob(x, torch.sigmoid(mean), scale + log_scale).flatten(1).sum(1)
        logits, means, scales, coupling = self._mixture(canvas)
        B, K, C, H, W = means.shape
        log_scale = log_scale.view(K, C, H, W)
        mu = self._coupled(torch.sigmoid(means), coupling, x)  # per channel (B, K, H, W), given the true colours
        log_p = sum(discretized_logistic_log_prob(x[:, c : c + 1], mu[c], scales[:, :, c] + log_scale[:, c])
                    for c in range(C))  # (B, K, H, W): log Π_c P_k(x_c | x_<c)
        return -torch.logsumexp(torch.log_softmax(logits, 1) + log_p, 1).flatten(1).sum(1)


def bits_per_dim(nats: float, dims: int) -> float:
    """Nats per image → bits per sub-pixel, the measure the literature reports for images."""
    return nats / (dims * math.log(2))
