"""The straightforward DRAW: the paper's equations written out one by one.

This is the executable specification the fast model in `draw.py` is checked against (and the
baseline `make bench` measures it against): an `nn.LSTMCell` per network, one `nn.Linear` per map,
the filterbanks rebuilt from scratch at every step, x and x̂ read separately.
`fast_state_dict` maps its weights onto the fused layout of `DRAW`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DRAWConfig, ImageShape
from .likelihood import canvas_channels, scale_channels


def _filterbank_as_written(gx, gy, log_sigma2, log_delta, N, A, B):
    """Equations 19–26 for one window: returns F_X `(batch, N, A)` and F_Y `(batch, N, B)`."""
    delta = (max(A, B) - 1) / max(N - 1, 1) * torch.exp(log_delta.clamp(-10, 10))
    sigma2 = torch.exp(log_sigma2.clamp(-10, 10))
    i = torch.arange(1, N + 1, dtype=gx.dtype, device=gx.device)
    mu_x = gx[:, None] + (i - N / 2 - 0.5) * delta[:, None]
    mu_y = gy[:, None] + (i - N / 2 - 0.5) * delta[:, None]
    a = torch.arange(1, A + 1, dtype=gx.dtype, device=gx.device)
    b = torch.arange(1, B + 1, dtype=gx.dtype, device=gx.device)
    Fx = torch.exp(-((a[None, None, :] - mu_x[:, :, None]) ** 2) / (2 * sigma2[:, None, None]))
    Fy = torch.exp(-((b[None, None, :] - mu_y[:, :, None]) ** 2) / (2 * sigma2[:, None, None]))
    Fx = Fx / torch.clamp(Fx.sum(2, keepdim=True), min=1e-8)
    Fy = Fy / torch.clamp(Fy.sum(2, keepdim=True), min=1e-8)
    return Fx, Fy


def _attn_params(h, linear, N, A, B):
    gx_t, gy_t, log_sigma2, log_delta, log_gamma = linear(h).unbind(1)
    gx = (A + 1) / 2 * (gx_t + 1)
    gy = (B + 1) / 2 * (gy_t + 1)
    Fx, Fy = _filterbank_as_written(gx, gy, log_sigma2, log_delta, N, A, B)
    return Fx, Fy, torch.exp(log_gamma.clamp(-10, 10))


def _discretized_logistic_p_as_written(x, mean, log_scale):
    """P(x) per sub-pixel, for 8-bit values x = k/255: the mass of x's bin [x − 1/510, x + 1/510] under
    Logistic(mean, s), the lowest bin reaching to −∞ and the highest to +∞."""
    s = torch.exp(log_scale.clamp(-8.0, 5.0))
    first, last = x < 1 / 510, x > 1 - 1 / 510
    u, l = (x + 1 / 510 - mean) / s, (x - 1 / 510 - mean) / s
    # P = F(u) − F(l) = (1 − F(l)) − (1 − F(u)): above the mean the second form subtracts small numbers
    # instead of two numbers near 1 (the same mass, without the cancellation).
    below = torch.where(last, 1.0, torch.sigmoid(u)) - torch.where(first, 0.0, torch.sigmoid(l))
    above = torch.where(first, 1.0, torch.sigmoid(-l)) - torch.where(last, 0.0, torch.sigmoid(-u))
    return torch.where(x > mean, above, below)


def _nll_as_written(name, c, x, log_scale, K):
    """−log p(x | c) per image for the canvas c `(B, P, H, W)`, as `likelihood.py`'s docstring lays it out."""
    C = x.shape[1]
    if name == "bernoulli":
        return F.binary_cross_entropy_with_logits(c, x, reduction="none").flatten(1).sum(1)
    if name == "logistic":
        p = _discretized_logistic_p_as_written(x, torch.sigmoid(c), log_scale)
    elif name == "logistic-scale":
        p = _discretized_logistic_p_as_written(x, torch.sigmoid(c[:, :C]), c[:, C:] + log_scale)
    else:
        # p(x) = Σ_k π_k Π_c P_k(x_c | x_<c): component by component, channel by channel
        logits, means, scales = c[:, :K], c[:, K : K + K * C], c[:, K + K * C : K + 2 * K * C]
        coupling = c[:, K + 2 * K * C :]
        pairs = [(ch, j) for ch in range(C) for j in range(ch)]
        pi = torch.softmax(logits, 1)
        p = 0
        for k in range(K):
            p_k = pi[:, k]
            for ch in range(C):
                mean = torch.sigmoid(means[:, k * C + ch])
                for i, (cc, j) in enumerate(pairs):
                    if cc == ch:
                        mean = mean + torch.tanh(coupling[:, k * len(pairs) + i]) * x[:, j]
                s = scales[:, k * C + ch] + log_scale[k * C + ch]
                p_k = p_k * _discretized_logistic_p_as_written(x[:, ch], mean, s)
            p = p + p_k
    return -torch.log(p).flatten(1).sum(1)


def _shows_as_written(name, c, C, K):
    """The image the canvas shows: σ of the mean channels, or the mixture's expected colour."""
    if name != "logistic-mixture":
        return torch.sigmoid(c[:, :C])
    pi = torch.softmax(c[:, :K], 1)
    pairs = [(ch, j) for ch in range(C) for j in range(ch)]
    image = 0
    for k in range(K):
        comp = []
        for ch in range(C):
            mean = torch.sigmoid(c[:, K + k * C + ch])
            for i, (cc, j) in enumerate(pairs):
                if cc == ch:
                    mean = mean + torch.tanh(c[:, K + 2 * K * C + k * len(pairs) + i]) * comp[j]
            comp.append(mean.clamp(0, 1))
        image = image + pi[:, k : k + 1] * torch.stack(comp, 1)
    return image


class ReferenceDRAW(nn.Module):
    def __init__(self, config: DRAWConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        self.config = cfg = config
        self.image_shape = shape = ImageShape(*image_shape)
        self.encoder = nn.LSTMCell(cfg.read_size(shape) + cfg.dec_size, cfg.enc_size)
        self.decoder = nn.LSTMCell(cfg.z_size, cfg.dec_size)
        self.mu = nn.Linear(cfg.enc_size, cfg.z_size)
        self.log_sigma = nn.Linear(cfg.enc_size, cfg.z_size)
        self.write = nn.Linear(cfg.dec_size, cfg.write_size(shape))
        if cfg.attention:
            self.read_attn = nn.Linear(cfg.dec_size, 5)
            self.write_attn = nn.Linear(cfg.dec_size, 5)
        self.P = canvas_channels(cfg.likelihood, shape.channels, cfg.mixtures)
        scales = scale_channels(cfg.likelihood, shape.channels, cfg.mixtures)
        if scales:
            self.log_scale = nn.Parameter(torch.randn(scales, shape.height, shape.width) * 0.5 - 2)

    def read(self, x, x_hat, h_dec):
        cfg = self.config
        if not cfg.attention:
            return torch.cat([x.flatten(1), x_hat.flatten(1)], 1)
        H, W = self.image_shape.height, self.image_shape.width
        Fx, Fy, gamma = _attn_params(h_dec, self.read_attn, cfg.read_n, W, H)
        glimpse_x = Fy[:, None] @ x @ Fx[:, None].transpose(2, 3)
        glimpse_x_hat = Fy[:, None] @ x_hat @ Fx[:, None].transpose(2, 3)
        return gamma[:, None] * torch.cat([glimpse_x.flatten(1), glimpse_x_hat.flatten(1)], 1)

    def write_op(self, h_dec):
        cfg = self.config
        w = self.write(h_dec)
        if not cfg.attention:
            return w.view(-1, self.P, self.image_shape.height, self.image_shape.width)
        w = w.view(-1, self.P, cfg.write_n, cfg.write_n)
        H, W = self.image_shape.height, self.image_shape.width
        Fx, Fy, gamma = _attn_params(h_dec, self.write_attn, cfg.write_n, W, H)
        return (Fy[:, None].transpose(2, 3) @ w @ Fx[:, None]) / gamma[:, None, None, None]

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (recon, kl), each `(B,)` in nats, for posterior noise `eps` `(T, B, z)`."""
        cfg = self.config
        B = x.shape[0]
        c = x.new_zeros(B, self.P, *x.shape[2:])
        h_enc = x.new_zeros(B, cfg.enc_size)
        c_enc = x.new_zeros(B, cfg.enc_size)
        h_dec = x.new_zeros(B, cfg.dec_size)
        c_dec = x.new_zeros(B, cfg.dec_size)
        kl = x.new_zeros(B)
        for t in range(cfg.T):
            x_hat = x - _shows_as_written(cfg.likelihood, c, self.image_shape.channels, cfg.mixtures)
            r = self.read(x, x_hat, h_dec)
            h_enc, c_enc = self.encoder(torch.cat([r, h_dec], 1), (h_enc, c_enc))
            mu, log_sigma = self.mu(h_enc), self.log_sigma(h_enc)
            sigma = torch.exp(log_sigma)
            z = mu + sigma * eps[t]
            h_dec, c_dec = self.decoder(z, (h_dec, c_dec))
            c = c + self.write_op(h_dec)
            kl = kl + 0.5 * (mu**2 + sigma**2 - 2 * log_sigma - 1).sum(1)
        recon = _nll_as_written(cfg.likelihood, c, x, getattr(self, "log_scale", None), cfg.mixtures)
        return recon, kl


def _ifog(w: Tensor) -> Tensor:
    """nn.LSTMCell's gate order [i, f, g, o] → the fused layout's [i, f, o, g] (along dim 0)."""
    i, f, g, o = w.chunk(4, 0)
    return torch.cat([i, f, o, g], 0)


@torch.no_grad()
def fast_state_dict(ref: ReferenceDRAW) -> dict[str, Tensor]:
    """The weights of `ref` in `DRAW`'s fused layout, so both compute the same function."""
    cfg = ref.config
    R, E = cfg.read_size(ref.image_shape), cfg.enc_size
    enc_w_ih = _ifog(ref.encoder.weight_ih)  # (4E, R + D)
    enc_bias = _ifog(ref.encoder.bias_ih + ref.encoder.bias_hh)
    dec_bias = _ifog(ref.decoder.bias_ih + ref.decoder.bias_hh)
    write_w, write_b = [ref.write.weight], [ref.write.bias]
    read_w, read_b = [], []
    if cfg.attention:
        write_w.append(ref.write_attn.weight)
        write_b.append(ref.write_attn.bias)
        read_w, read_b = [ref.read_attn.weight], [ref.read_attn.bias]
    dec_proj_w = torch.cat(write_w + [_ifog(ref.decoder.weight_hh)] + read_w + [enc_w_ih[:, R:]], 0)
    dec_proj_b = torch.cat(write_b + [dec_bias] + read_b + [dec_bias.new_zeros(4 * E)], 0)
    extra = {"log_scale": ref.log_scale.clone()} if hasattr(ref, "log_scale") else {}
    return {
        **extra,
        "enc_in.weight": enc_w_ih[:, :R].clone(),
        "enc_proj.weight": torch.cat([ref.mu.weight, ref.log_sigma.weight, _ifog(ref.encoder.weight_hh)], 0),
        "enc_proj.bias": torch.cat([ref.mu.bias, ref.log_sigma.bias, enc_bias], 0),
        "dec_in.weight": _ifog(ref.decoder.weight_ih).clone(),
        "dec_proj.weight": dec_proj_w,
        "dec_proj.bias": dec_proj_b,
    }
