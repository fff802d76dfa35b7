"""Gaussian attention filterbanks: equations 19–29 of the DRAW paper, for images of any shape.

Conventions. An image is `(B, C, H, W)`; the paper's A is W (the x axis, columns) and its B is H
(the y axis, rows). Pixel coordinates run 1..W and 1..H, matching the grid centre g = (A+1)/2·(g̃+1),
so g̃ = 0 is the exact centre of the image. An N×N glimpse of a single-channel image x (H×W) is
F_Y x F_X^T with F_Y (N×H) and F_X (N×W); the paper writes F_Y x F_X^T for A = B, and only this order
is right when A ≠ B. The same filters serve every channel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

# Filter rows are divided by max(Z, EPS) so a window that falls off the image gives zeros, not NaN.
EPS = 1e-8
# The log-parameters are exponentiated; clamping them keeps exp() finite and 1/γ bounded for any
# decoder output (e^±10 is far beyond any useful window) while leaving gradients intact in range.
LOG_CLAMP = 10.0


class Window(NamedTuple):
    """One attention window per image, in pixel units; every field is `(B,)`."""

    gx: Tensor
    gy: Tensor
    delta: Tensor
    sigma2: Tensor
    gamma: Tensor


def window_from_params(params: Tensor, height: int, width: int, N: int) -> Window:
    """Equations 21–24: (g̃_X, g̃_Y, log σ², log δ̃, log γ) `(B, 5)` → a Window on an H×W image."""
    gx_t, gy_t, log_sigma2, log_delta, log_gamma = params.unbind(-1)
    gx = (width + 1) / 2 * (gx_t + 1)
    gy = (height + 1) / 2 * (gy_t + 1)
    # (max(A, B) − 1)/(N − 1): an N-point grid with δ̃ = 1 spans the whole image. N = 1 has no stride.
    delta = (max(height, width) - 1) / max(N - 1, 1) * log_delta.clamp(-LOG_CLAMP, LOG_CLAMP).exp()
    sigma2 = log_sigma2.clamp(-LOG_CLAMP, LOG_CLAMP).exp()
    gamma = log_gamma.clamp(-LOG_CLAMP, LOG_CLAMP).exp()
    return Window(gx, gy, delta, sigma2, gamma)


def grid_offsets(N: int, device=None, dtype=None) -> Tensor:
    """(i − N/2 − 0.5) for i = 1..N (equations 19–20): symmetric about the centre, `(N,)`."""
    return torch.arange(1, N + 1, device=device, dtype=dtype) - N / 2 - 0.5


def pixel_coords(size: int, device=None, dtype=None) -> Tensor:
    """Pixel coordinates 1..size, `(size,)`."""
    return torch.arange(1, size + 1, device=device, dtype=dtype)


def filterbank(g: Tensor, delta: Tensor, sigma2: Tensor, offsets: Tensor, coords: Tensor) -> Tensor:
    """Equations 25–26 along one axis: `(B,)` window parameters → normalised filters `(B, N, size)`."""
    mu = g[:, None] + offsets * delta[:, None]  # (B, N) centres of the N Gaussians
    d = coords - mu[:, :, None]  # (B, N, size)
    F = torch.exp(-(d * d) / (2 * sigma2[:, None, None]))
    return F / F.sum(-1, keepdim=True).clamp_min(EPS)


class FilterGrid(nn.Module):
    """The constant parts of an N×N filterbank on an H×W image, kept as buffers so no step rebuilds them."""

    def __init__(self, height: int, width: int, N: int):
        super().__init__()
        self.height, self.width, self.N = height, width, N
        self.register_buffer("offsets", grid_offsets(N), persistent=False)
        self.register_buffer("x_coords", pixel_coords(width), persistent=False)
        self.register_buffer("y_coords", pixel_coords(height), persistent=False)

    def forward(self, params: Tensor) -> tuple[Window, Tensor, Tensor]:
        """`(B, 5)` → (Window, F_X `(B, N, W)`, F_Y `(B, N, H)`)."""
        win = window_from_params(params, self.height, self.width, self.N)
        Fx = filterbank(win.gx, win.delta, win.sigma2, self.offsets, self.x_coords)
        Fy = filterbank(win.gy, win.delta, win.sigma2, self.offsets, self.y_coords)
        return win, Fx, Fy


def read_glimpse(images: Tensor, Fx: Tensor, Fy: Tensor) -> Tensor:
    """F_Y x F_X^T for every channel: `(B, C, H, W)` → `(B, C, N, N)`."""
    return Fy[:, None] @ images @ Fx[:, None].transpose(-1, -2)


def write_patch(patch: Tensor, Fx: Tensor, Fy: Tensor) -> Tensor:
    """F_Y^T w F_X for every channel: `(B, C, N, N)` → `(B, C, H, W)` (a strided view).

    Each side is one product per image with the channels stacked, `(C·N, N) @ (N, W)` then
    `(H, N) @ (N, C·W)`, rather than B·C tiny ones: a canvas of many channels (a mixture likelihood's)
    writes several times faster so.
    """
    B, C, N, _ = patch.shape
    W, H = Fx.shape[-1], Fy.shape[-1]
    right = (patch.reshape(B, C * N, N) @ Fx).view(B, C, N, W)  # w F_X
    left = Fy.transpose(1, 2) @ right.transpose(1, 2).reshape(B, N, C * W)  # F_Y^T (w F_X): (B, H, C·W)
    return left.view(B, H, C, W).transpose(1, 2)
