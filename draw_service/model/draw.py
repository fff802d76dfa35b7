"""DRAW: a recurrent VAE that draws on a canvas over T steps (Gregor et al., 2015, equations 3–8).

    x̂_t = x − σ(c_{t−1})
    r_t = read(x, x̂_t, h^dec_{t−1})
    h^enc_t = LSTM_enc(h^enc_{t−1}, [r_t, h^dec_{t−1}])
    z_t ~ Q(z_t | h^enc_t) = N(μ_t, σ_t)
    h^dec_t = LSTM_dec(h^dec_{t−1}, z_t)
    c_t = c_{t−1} + write(h^dec_t)

Loss per image, in nats: −log p(x | c_T) + Σ_t KL(Q(z_t|h^enc_t) ‖ N(0, I)), where p is the paper's
Bernoulli or, for 8-bit images, a discretised logistic or a mixture of them (`likelihood.py`). The canvas
carries what p needs per pixel (P channels; C for the paper's), and σ(c) above is the image it shows,
`likelihood.mean`.

Speed without changing the equations: every linear map of h^dec_t (the write, the next step's read
window, the encoder's input from h^dec and the decoder's own recurrence) is one fused matrix, and
likewise every map of h^enc_t, so each step runs two big matrix products instead of eight small
ones. Without attention the read [x, x̂] is linear in x, so x's share of the encoder input is
computed once rather than T times. `compile_step` hands blocks of steps to torch.compile, which fuses
their pointwise work. `reference.py` holds the straightforward version and
`tests/unit/test_equivalence.py` checks that both give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import likelihood
from .config import DRAWConfig, ImageShape
from .filterbank import FilterGrid, Window, read_glimpse, write_patch

N_ATTN = 5  # g̃_X, g̃_Y, log σ², log δ̃, log γ


@dataclass
class DrawingRecord:
    """The drawing step by step, for animations: canvases σ(c_t) and attention windows (fields `(T, B)`)."""

    canvases: Tensor  # (T, B, C, H, W) in [0, 1]: the image each canvas shows
    write_windows: Window | None
    read_windows: Window | None


@dataclass
class DRAWOutput:
    recon: Tensor  # (B,) −log p(x | c_T), nats
    kl: Tensor  # (B,) Σ_t KL(Q(z_t) ‖ N(0, I)), nats
    canvas: Tensor  # (B, P, H, W) the final canvas c_T, P channels as the likelihood lays them out
    mu: Tensor  # (T, B, z)
    log_sigma: Tensor  # (T, B, z)
    eps: Tensor  # (T, B, z) the standard-normal noise behind z_t = μ_t + σ_t ε_t
    record: DrawingRecord | None = None

    @property
    def loss(self) -> Tensor:
        """The negative ELBO, per image `(B,)`: the paper's NLL bound when averaged over a test set."""
        return self.recon + self.kl

    def log_weight(self) -> Tensor:
        """log p(x, z) − log q(z | x) for the sampled z, `(B,)`: the terms of an importance-weighted bound."""
        z = self.mu + self.log_sigma.exp() * self.eps
        # log N(z; 0, 1) − log N(z; μ, σ) = −z²/2 + ε²/2 + log σ  (the ½ log 2π cancels)
        log_ratio = (0.5 * (self.eps * self.eps - z * z) + self.log_sigma).sum(dim=(0, 2))
        return log_ratio - self.recon


def lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM cell update from pre-activations `(B, 4H)` ordered [i, f, o, g]; returns (h, c), each `(B, H)`.

    The three sigmoid gates are contiguous so one sigmoid call covers them. Blocks are taken with
    split/chunk, never with slices: the backward of a slice builds a zero tensor of the whole input.
    """
    H = c.shape[1]
    sig, g = gates.split([3 * H, H], 1)
    i, f, o = torch.sigmoid(sig).chunk(3, 1)
    c = torch.addcmul(f * c, i, torch.tanh(g))
    h = o * torch.tanh(c)
    return h, c


class DRAW(nn.Module):
    """DRAW with attention-based or plain read and write, for `(B, C, H, W)` images in [0, 1].

    Built from an architecture and the shape of the images it draws: `DRAW(config, (C, H, W))`.

    Parameters (the fused layout; `reference.py` maps the textbook layout onto it):
      enc_in    r_t → encoder gates                          (4·enc, read_size), no bias
      enc_proj  h^enc_t → [μ_t | log σ_t | encoder recurrence]  (2·z + 4·enc, enc)
      dec_in    z_t → decoder gates                          (4·dec, z), no bias
      dec_proj  h^dec_t → [write | decoder recurrence | read window | encoder input]
                (write_size + 5·att + 4·dec + 5·att + 4·enc, dec)
      log_scale the logistic likelihoods' learned per-sub-pixel log s (offset)  (C or K·C, H, W), not with bernoulli
    The first two blocks of dec_proj are contiguous so generation, which needs only them, uses a view.
    LSTM gates are ordered [i, f, o, g].
    """

    def __init__(self, config: DRAWConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        if config.likelihood not in likelihood.NAMES:
            raise ValueError(f"a DRAW network needs likelihood {', '.join(likelihood.NAMES)}, got "
                             f"{config.likelihood!r} (settle 'auto' for the data with DRAWConfig.for_data)")
        self.image_shape = shape = ImageShape(*(int(v) for v in image_shape))
        if min(shape) < 1:
            raise ValueError(f"image shape (C, H, W) must be positive, got {tuple(image_shape)}")
        config.check_fits(shape)
        self.config = cfg = config
        self.likelihood = likelihood.Likelihood(cfg.likelihood, shape.channels, cfg.mixtures)
        self.canvas_shape = (self.likelihood.canvas_channels, shape.height, shape.width)  # (P, H, W)
        self.read_size, self.write_size = cfg.read_size(shape), cfg.write_size(shape)
        att = N_ATTN if cfg.attention else 0
        self.write_out = self.write_size + att  # the patch (or canvas delta), then the write window
        self.enc_in = nn.Linear(self.read_size, 4 * cfg.enc_size, bias=False)
        self.enc_proj = nn.Linear(cfg.enc_size, 2 * cfg.z_size + 4 * cfg.enc_size)
        self.dec_in = nn.Linear(cfg.z_size, 4 * cfg.dec_size, bias=False)
        self.dec_proj = nn.Linear(cfg.dec_size, self.write_out + 4 * cfg.dec_size + att + 4 * cfg.enc_size)
        if cfg.attention:
            self.read_grid = FilterGrid(shape.height, shape.width, cfg.read_n)
            self.write_grid = FilterGrid(shape.height, shape.width, cfg.write_n)
        self.log_scale = None
        if self.likelihood.scale_channels:
            self.log_scale = nn.Parameter(torch.empty(self.likelihood.scale_channels, shape.height, shape.width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # U(±1/√fan-in) for every block. (A 2×2 read hands the encoder only 8 numbers; with the LSTM
        # default of 1/√hidden their share of the gates is so small that the posterior collapses.)
        for lin, fan in ((self.enc_in, self.read_size), (self.enc_proj, self.config.enc_size),
                         (self.dec_in, self.config.z_size), (self.dec_proj, self.config.dec_size)):
            bound = 1 / math.sqrt(fan)
            nn.init.uniform_(lin.weight, -bound, bound)
            if lin.bias is not None:
                nn.init.uniform_(lin.bias, -bound, bound)
        if self.config.attention:
            self._init_windows()
        if self.log_scale is not None:
            nn.init.constant_(self.log_scale, likelihood.INIT_LOG_SCALE)

    def nll(self, canvas: Tensor, x: Tensor) -> Tensor:
        """−log p(x | c_T) per image `(B,)`, nats: the reconstruction term of the loss."""
        return self.likelihood.nll(canvas, self.log_scale, x)

    def shows(self, canvas: Tensor) -> Tensor:
        """The image a canvas `(B, P, H, W)` shows, `(B, C, H, W)` in [0, 1] (σ(c) for the paper's)."""
        return self.likelihood.mean(canvas)

    @torch.no_grad()
    def _init_windows(self) -> None:
        """Start every window over the middle of the image, its filters wide enough to see it.

        With zero biases a window's N filters span the whole image (δ̃ = 1) with σ = 1 pixel: a 2×2 read
        then samples four border pixels, which are blank on MNIST, so the encoder learns nothing and the
        posterior collapses. Here the grid spans the middle 60% and σ is half the stride, so the first
        glimpses are blurry views of the centre; training moves the windows from there.
        """
        cfg = self.config
        longest = max(self.image_shape.height, self.image_shape.width) - 1
        # In dec_proj's output the write window follows the patch; the read window follows the recurrence.
        for first, N in ((self.write_size, cfg.write_n), (self.write_out + 4 * cfg.dec_size, cfg.read_n)):
            stride = 0.6 * longest / max(N - 1, 1)  # pixels between filter centres
            bias = self.dec_proj.bias[first : first + N_ATTN]
            bias[0] = bias[1] = 0.0  # g̃ = 0: the centre
            bias[2] = 2 * math.log(max(stride / 2, 0.5))  # log σ²
            bias[3] = math.log(0.6)  # log δ̃
            bias[4] = 0.0  # log γ

    def _dec_sizes(self) -> list[int]:
        """Widths of dec_proj's output blocks: [write, decoder recurrence, read window, encoder input]."""
        cfg = self.config
        return [self.write_out, 4 * cfg.dec_size, N_ATTN if cfg.attention else 0, 4 * cfg.enc_size]

    def check_images(self, x: Tensor) -> None:
        expected = self.image_shape
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"DRAW expects images of shape (batch, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"(channels, height, width), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"DRAW expects float images with values in [0, 1], got dtype {x.dtype}")

    def check_latents(self, eps: Tensor) -> None:
        """Latents for `decode` are `(T, n, z)` with n >= 1."""
        cfg = self.config
        if eps.dim() != 3 or eps.shape[0] != cfg.T or eps.shape[2] != cfg.z_size or eps.shape[1] < 1:
            raise ValueError(f"decode expects latents of shape ({cfg.T}, n, {cfg.z_size}) with n >= 1, "
                             f"got {tuple(eps.shape)}")

    def _write(self, out: Tensor) -> tuple[Tensor, Window | None]:
        """The write block of dec_proj's output `(B, write_out)` → canvas increment `(B, P, H, W)` and window."""
        cfg = self.config
        B = out.shape[0]
        if not cfg.attention:
            return out.view(B, *self.canvas_shape), None
        patch, params = out.split([self.write_size, N_ATTN], 1)
        win, Fx, Fy = self.write_grid(params)
        # 1/γ scales the N×N patch rather than the H×W result: the same product, a fraction of the divisions
        patch = patch.reshape(B, self.canvas_shape[0], cfg.write_n, cfg.write_n) / win.gamma[:, None, None, None]
        return write_patch(patch, Fx, Fy), win

    def _step(self, x: Tensor, x_share: Tensor | None, canvas: Tensor, c_enc: Tensor, c_dec: Tensor,
              hd_dec: Tensor, hd_read: Tensor, hd_enc: Tensor, he_rec: Tensor, eps_t: Tensor):
        """One drawing step, equations 3–8. `hd_*` are the blocks of dec_proj(h^dec_{t−1}) this step needs,
        `he_rec` is enc_proj's recurrence block of h^enc_{t−1}; returns the next state, μ_t, log σ_t and
        the read and write windows.
        """
        cfg = self.config
        Z, E = cfg.z_size, cfg.enc_size
        w_read = self.enc_in.weight  # (4E, read_size)
        if cfg.attention:
            x_hat = x - self.shows(canvas)
            read_win, Fx, Fy = self.read_grid(hd_read)
            glimpse = read_glimpse(torch.cat([x, x_hat], 1), Fx, Fy)  # (B, 2C, N, N)
            r = glimpse.flatten(1) * read_win.gamma[:, None]  # (B, 2·C·N²)
            enc_gates = torch.addmm(hd_enc + he_rec, r, w_read.t())
        else:
            read_win = None
            w_xhat = w_read[:, x[0].numel():]
            enc_gates = torch.addmm(x_share + hd_enc + he_rec, self.shows(canvas).flatten(1), w_xhat.t(), alpha=-1)
        h_enc, c_enc = lstm_update(enc_gates, c_enc)
        mu, log_sigma, he_rec = self.enc_proj(h_enc).split([Z, Z, 4 * E], 1)
        z = torch.addcmul(mu, log_sigma.exp(), eps_t)
        h_dec, c_dec = lstm_update(torch.addmm(hd_dec, z, self.dec_in.weight.t()), c_dec)
        hd_write, hd_dec, hd_read, hd_enc = self.dec_proj(h_dec).split(self._dec_sizes(), 1)
        delta, write_win = self._write(hd_write)
        return canvas + delta, c_enc, c_dec, hd_dec, hd_read, hd_enc, he_rec, mu, log_sigma, read_win, write_win

    def _steps(self, x: Tensor, x_share: Tensor | None, state: tuple[Tensor, ...], eps: Tensor, record: bool):
        """`k` drawing steps in a row for the noise block `eps` `(k, B, z)`, from `state` (canvas, c_enc, c_dec
        and the carried projections); returns the new state, μ and log σ `(k, B, z)` and, when recording,
        the per-step (σ(canvas), read window, write window). This is the unit `compile_step` compiles:
        one graph per k steps pays the compiled region's call and autograd overhead k times less often.
        """
        mus, log_sigmas, records = [], [], []
        for eps_t in eps.unbind(0):
            *state, mu, log_sigma, read_win, write_win = self._step(x, x_share, *state, eps_t)
            mus.append(mu)
            log_sigmas.append(log_sigma)
            if record:
                records.append((self.shows(state[0]), read_win, write_win))
        return tuple(state), torch.stack(mus), torch.stack(log_sigmas), records

    def compile_step(self, steps_per_call: int = 8, **options) -> DRAW:
        """Run the drawing steps, and generation's decoder steps, through torch.compile, `steps_per_call`
        steps per compiled graph (fuses the pointwise work; CPU and GPU). More steps per graph run faster
        and take longer to compile: on a 2-core CPU at the paper's size, 8 steps per graph train ~15%
        faster than 1 and compile in about a minute.
        """
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
        self._steps_per_call = steps_per_call
        self._steps_fn = torch.compile(self._steps, dynamic=False, **options)
        self._decode_fn = torch.compile(self._decode_steps, dynamic=False, **options)
        return self

    def forward(
        self,
        x: Tensor,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
        record: bool = False,
    ) -> DRAWOutput:
        """Encode and reconstruct `x` `(B, C, H, W)`; `eps` `(T, B, z)` fixes the posterior noise."""
        self.check_images(x)
        cfg = self.config
        B, T, E, D, Z = x.shape[0], cfg.T, cfg.enc_size, cfg.dec_size, cfg.z_size
        if eps is None:
            eps = torch.randn(T, B, Z, generator=generator, device=x.device, dtype=x.dtype)

        canvas = x.new_zeros(B, *self.canvas_shape)  # c_0
        c_enc = x.new_zeros(B, E)
        c_dec = x.new_zeros(B, D)
        # dec_proj(h^dec_0 = 0) and enc_proj(h^enc_0 = 0) are their biases.
        _, hd_dec, hd_read, hd_enc = self.dec_proj.bias.expand(B, -1).split(self._dec_sizes(), 1)
        he_rec = self.enc_proj.bias[2 * Z :].expand(B, -1)
        state = (canvas, c_enc, c_dec, hd_dec, hd_read, hd_enc, he_rec)
        x_share = None
        if not cfg.attention:
            # r = [x, x̂] = [x, x − mean(c)], so W r = (W_x + W_x̂) x − W_x̂ mean(c): x's share is computed once.
            P = x[0].numel()
            w_read = self.enc_in.weight
            x_share = x.flatten(1) @ (w_read[:, :P] + w_read[:, P:]).t()  # (B, 4E)

        steps = getattr(self, "_steps_fn", self._steps)
        k = getattr(self, "_steps_per_call", T)
        mus, log_sigmas, records = [], [], []
        for t in range(0, T, k):  # a last, shorter block (T not a multiple of k) compiles a graph of its own
            state, mu, log_sigma, rec_k = steps(x, x_share, state, eps[t : t + k], record)
            mus.append(mu)
            log_sigmas.append(log_sigma)
            records += rec_k

        # Under a bf16 autocast the steps' matrix products run in bf16; the bound's terms are summed in the
        # images' precision, where bf16's 8-bit mantissa would round away most of a sum of thousands of terms.
        canvas = state[0].to(x.dtype)
        mu, log_sigma = torch.cat(mus).to(x.dtype), torch.cat(log_sigmas).to(x.dtype)  # (T, B, Z)
        with torch.autocast(x.device.type, enabled=False):
            # KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 2 log σ − 1), summed over t and z (equation 11).
            kl = 0.5 * (mu * mu + torch.exp(2 * log_sigma) - 2 * log_sigma - 1).sum(dim=(0, 2))
            recon = self.nll(canvas, x)
        rec = None
        if record:
            canvases, read_wins, write_wins = zip(*records)
            rec = DrawingRecord(torch.stack(canvases), _stack_windows(write_wins), _stack_windows(read_wins))
        return DRAWOutput(recon, kl, canvas, mu, log_sigma, eps, rec)

    def _decode_steps(self, state: tuple[Tensor, Tensor, Tensor], eps: Tensor, record: bool):
        """`k` generation steps for the latents block `eps` `(k, n, z)` from `state` (canvas, c_dec and the
        decoder recurrence block of dec_proj(h^dec)); returns the new state and, when recording, the
        per-step (σ(canvas), write window). Compiled with the drawing steps by `compile_step`.
        """
        canvas, c_dec, hd_dec = state
        gen_sizes = self._dec_sizes()[:2]  # only [write | decoder recurrence] are needed
        gen_w = self.dec_proj.weight[: sum(gen_sizes)]
        gen_b = self.dec_proj.bias[: sum(gen_sizes)]
        records = []
        for z_t in eps.unbind(0):
            h_dec, c_dec = lstm_update(torch.addmm(hd_dec, z_t, self.dec_in.weight.t()), c_dec)
            hd_write, hd_dec = F.linear(h_dec, gen_w, gen_b).split(gen_sizes, 1)
            delta, write_win = self._write(hd_write)
            canvas = canvas + delta
            if record:
                records.append((self.shows(canvas), write_win))
        return (canvas, c_dec, hd_dec), records

    @torch.no_grad()
    def decode(self, eps: Tensor, record: bool = False) -> tuple[Tensor, DrawingRecord | None]:
        """Generation (section 2.3): the decoder alone on latents `eps` `(T, n, z)` → images `(n, C, H, W)`.

        In generation the decoder's inputs z_t come from the prior, not from its own outputs, so its T steps
        are one LSTM call over the whole sequence (oneDNN on a CPU, cuDNN on a GPU), the T writes one batched
        operation over T·n, and the canvas their sum over t — a cumulative sum when the record needs every
        step. The same images as `decode_stepwise`, to float precision.

        Under a bf16 autocast the LSTM and the write projections run in bf16; the canvas is composed, and the
        images computed, in the latents' precision, as training accumulates its canvas.
        """
        self.check_latents(eps)
        cfg = self.config
        T, n, _ = eps.shape
        rec = slice(self.write_out, self.write_out + 4 * cfg.dec_size)  # dec_proj's decoder-recurrence block
        h0 = eps.new_zeros(1, n, cfg.dec_size)
        w_ih, w_hh, b = (_lstm_gate_order(w) for w in (self.dec_in.weight, self.dec_proj.weight[rec],
                                                       self.dec_proj.bias[rec]))
        h_dec, _, _ = torch.lstm(eps, (h0, h0), [w_ih, w_hh, b, torch.zeros_like(b)], True, 1, 0.0, False, False,
                                 False)  # (T, n, D): h^dec_1 .. h^dec_T
        writes = F.linear(h_dec, self.dec_proj.weight[: self.write_out], self.dec_proj.bias[: self.write_out])
        with torch.autocast(eps.device.type, enabled=False):
            writes = writes.to(eps.dtype)  # (T, n, write_out)
            # the same numbers whether or not the steps are recorded
            images = self.shows(self._canvas_of_writes(writes.flatten(0, 1), T, n))
            if not record:
                return images, None
            delta, window = self._write(writes.flatten(0, 1))  # every step's write at once: (T·n, P, H, W)
            canvases = delta.view(T, n, *self.canvas_shape).cumsum(0)  # (T, n, P, H, W): c_t for every t
            canvases = self.shows(canvases.flatten(0, 1)).view(T, n, *self.image_shape)
        window = Window(*(f.view(T, n) for f in window)) if window is not None else None
        return images, DrawingRecord(canvases, window, None)

    def _canvas_of_writes(self, writes: Tensor, T: int, n: int) -> Tensor:
        """c_T = Σ_t write(h^dec_t) for every step's write block `(T·n, write_out)` → `(n, P, H, W)`.

        With attention, Σ_t F_Y,tᵀ (w_t/γ_t) F_X,t is one product per image of F_Yᵀ stacked over t, `(H, T·N)`,
        with (w_t/γ_t) F_X,t stacked over t, `(T·N, W)`: one well-shaped product instead of T·n tiny ones
        and no `(T, n, C, H, W)` of per-step increments to sum.
        """
        cfg, (P, H, W) = self.config, self.canvas_shape
        if not cfg.attention:
            return writes.view(T, n, P, H, W).sum(0)
        N = cfg.write_n
        patch, params = writes.split([self.write_size, N_ATTN], 1)
        win, Fx, Fy = self.write_grid(params)  # Fx (T·n, N, W), Fy (T·n, N, H)
        patch = patch.reshape(T * n, P, N, N) / win.gamma[:, None, None, None]
        right = (patch @ Fx[:, None]).view(T, n, P, N, W).permute(1, 2, 0, 3, 4).reshape(n, P, T * N, W)
        left = Fy.view(T, n, N, H).permute(1, 3, 0, 2).reshape(n, 1, H, T * N)
        return left @ right  # (n, P, H, W)

    @torch.no_grad()
    def decode_stepwise(self, eps: Tensor, record: bool = False) -> tuple[Tensor, DrawingRecord | None]:
        """Generation one step at a time, as the equations read (compiled blocks of steps after `compile_step`):
        the reference `decode` is checked against."""
        self.check_latents(eps)
        cfg = self.config
        T, n, _ = eps.shape
        # h^dec_0 = 0, so the first decoder recurrence is dec_proj's bias.
        hd_dec = self.dec_proj.bias[self.write_out : self.write_out + 4 * cfg.dec_size].expand(n, -1)
        state = (eps.new_zeros(n, *self.canvas_shape), eps.new_zeros(n, cfg.dec_size), hd_dec)
        steps = getattr(self, "_decode_fn", self._decode_steps)
        k = getattr(self, "_steps_per_call", T)
        records = []
        for t in range(0, T, k):
            state, rec_k = steps(state, eps[t : t + k], record)
            records += rec_k
        rec = None
        if record:
            canvases, write_wins = zip(*records)
            rec = DrawingRecord(torch.stack(canvases), _stack_windows(write_wins), None)
        return self.shows(state[0]), rec

    def prior_latents(self, n: int, seed: int, temperature: float = 1.0) -> Tensor:
        """Latents `(T, n, z)` from the prior N(0, temperature²·I), drawn on the CPU from `seed`: the same seed
        gives the same images on every device and through every path (the CLI, the HTTP service)."""
        _check_prior(n, temperature)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(self.config.T, n, self.config.z_size, generator=g) * temperature

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        record: bool = False,
    ) -> tuple[Tensor, DrawingRecord | None]:
        """`n` images `(n, C, H, W)` in [0, 1] from the prior z_t ~ N(0, temperature²·I)."""
        _check_prior(n, temperature)
        p = self.dec_proj.weight
        eps = torch.randn(self.config.T, n, self.config.z_size, generator=generator, device=p.device, dtype=p.dtype)
        return self.decode(eps * temperature, record=record)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, generator: torch.Generator | None = None) -> DrawingRecord:
        """The per-step record of reconstructing `x`: canvases and both read and write windows."""
        return self.forward(x, generator=generator, record=True).record


def _check_prior(n: int, temperature: float) -> None:
    if n < 1:
        raise ValueError(f"sample needs n >= 1, got {n}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _lstm_gate_order(w: Tensor) -> Tensor:
    """Rows in this model's gate order [i, f, o, g] → torch's LSTM order [i, f, g, o]."""
    i, f, o, g = w.chunk(4, 0)
    return torch.cat([i, f, g, o], 0)


def _stack_windows(wins: list[Window | None]) -> Window | None:
    if not wins or wins[0] is None:
        return None
    return Window(*(torch.stack(field) for field in zip(*wins)))
