"""The likelihoods for 8-bit images: true distributions over the 256 values (over 256³ colours, coupled)."""

import math

import pytest
import torch
from tiny import tiny_model

from draw_service.model.likelihood import Likelihood, bits_per_dim, discretized_logistic_log_prob, logistic_nll

VALUES = torch.arange(256, dtype=torch.float64) / 255  # every 8-bit value, as the data layer scales it


def test_the_256_values_have_probabilities_that_sum_to_one():
    g = torch.Generator().manual_seed(0)
    mean = torch.cat([torch.rand(200, generator=g, dtype=torch.float64), torch.tensor([0.0, 1.0, 0.5],
                                                                                     dtype=torch.float64)])
    log_scale = torch.cat([torch.rand(200, generator=g, dtype=torch.float64) * 10 - 7,
                           torch.tensor([-7.0, -7.0, 4.0], dtype=torch.float64)])
    log_p = discretized_logistic_log_prob(VALUES[:, None], mean[None], log_scale[None])  # (256, 203)
    assert torch.isfinite(log_p).all()
    total = log_p.exp().sum(0)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-9)
    # in float32 as the model trains: still a distribution, to float precision
    log_p32 = discretized_logistic_log_prob(VALUES[:, None].float(), mean[None].float(), log_scale[None].float())
    torch.testing.assert_close(log_p32.exp().sum(0), torch.ones(203), rtol=0, atol=2e-5)


def test_a_narrow_logistic_puts_its_mass_on_the_value_under_its_mean():
    mean = torch.tensor([0.0, 17 / 255, 1.0], dtype=torch.float64)
    log_p = discretized_logistic_log_prob(mean, mean, torch.full((3,), -8.0, dtype=torch.float64))
    assert (log_p > math.log(0.99)).all()
    # and the values far from it get almost nothing, without underflowing to -inf
    far = discretized_logistic_log_prob(1 - mean, mean, torch.full((3,), -8.0, dtype=torch.float64))
    assert torch.isfinite(far).all() and (far < -100).all()


def test_gradients_stay_finite_at_the_extremes():
    x = torch.tensor([0.0, 1.0, 0.0, 1.0, 128 / 255])
    mean = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5], requires_grad=True)
    log_scale = torch.tensor([-9.0, -7.0, 6.0, 20.0, -3.0], requires_grad=True)
    discretized_logistic_log_prob(x, mean, log_scale).sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


def test_a_logistic_model_scores_in_nats_and_bits_per_dim():
    model = tiny_model((3, 8, 10), likelihood="logistic")
    x = torch.randint(0, 256, (5, 3, 8, 10)).float() / 255
    out = model(x)
    manual = logistic_nll(out.canvas, model.log_scale, x)
    torch.testing.assert_close(out.recon, manual)
    assert (out.recon > 0).all()  # a probability of a discrete value is at most one
    out.loss.mean().backward()
    assert model.log_scale.grad.abs().sum() > 0
    assert bits_per_dim(240 * math.log(2), 240) == 1.0


def _one_pixel_canvas(lik: Likelihood, seed: int, spread: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, lik.canvas_channels, 1, 1, generator=g, dtype=torch.float64) * spread


def _every_colour_of_one_pixel(r: int) -> torch.Tensor:
    """The 65,536 colours (r, g, b) with this red value, as 1×1 images `(65536, 3, 1, 1)` in [0, 1]."""
    g, b = torch.meshgrid(VALUES, VALUES, indexing="ij")
    return torch.stack([torch.full_like(g, r / 255), g, b]).flatten(1).t()[:, :, None, None]


@pytest.mark.parametrize("seed,spread,mean_tol", [(0, 1.0, 0.03), (1, 3.0, None), (2, 0.3, 0.002)])
def test_the_coupled_mixture_is_a_distribution_over_every_colour(seed, spread, mean_tol):
    # p(r) p(g | r) p(b | r, g), mixed over K components, summed over all 256³ colours of one pixel is one;
    # its expected colour is what the canvas shows (the pictures, and the encoder's error image).
    lik = Likelihood("logistic-mixture", 3, mixtures=3)
    canvas = _one_pixel_canvas(lik, seed, spread)
    log_scale = torch.randn(9, 1, 1, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64) - 3
    total, expected = 0.0, torch.zeros(3, dtype=torch.float64)
    for r in range(256):
        x = _every_colour_of_one_pixel(r).double()
        p = torch.exp(-lik.nll(canvas.expand(len(x), -1, -1, -1), log_scale, x))  # (65536,)
        total += p.sum().item()
        expected += (p[:, None] * x.flatten(1)).sum(0)
    assert abs(total - 1) < 1e-9
    # Its expected colour is what the canvas shows, to the mass the outer bins fold back (which grows
    # with saturated means and strong coupling: the shown image is a picture, the likelihood exact).
    if mean_tol is not None:
        torch.testing.assert_close(lik.mean(canvas).flatten(), expected, rtol=0, atol=mean_tol)


def test_the_coupling_moves_green_with_red():
    # One component, every mean logit 0 (means 0.5): green's mean moves with red when the (g, r) coupling is on.
    lik = Likelihood("logistic-mixture", 3, mixtures=1)
    coupled = torch.zeros(1, lik.canvas_channels, 1, 1)
    coupled[0, 7] = 5.0  # channels [logit | 3 means | 3 log-scales | (g,r) (b,r) (b,g)]: tanh(5) ≈ 1
    log_scale = torch.full((3, 1, 1), -5.0)
    follows, ignores = (torch.tensor([76, g, 128]).view(1, 3, 1, 1) / 255 for g in (204, 128))  # g = 0.5 + r, g = 0.5
    assert lik.nll(coupled, log_scale, follows).item() < lik.nll(coupled, log_scale, ignores).item() - 20
    independent = torch.zeros_like(coupled)
    assert lik.nll(independent, log_scale, ignores).item() < lik.nll(independent, log_scale, follows).item() - 20
    assert lik.mean(coupled)[0, 1].item() == pytest.approx(1.0, abs=1e-3)  # 0.5 + tanh(5)·r̄, r̄ = 0.5


@pytest.mark.parametrize("name", ["logistic-scale", "logistic-mixture"])
def test_grey_likelihoods_with_drawn_scales_sum_to_one_over_the_256_values(name):
    lik = Likelihood(name, 1, mixtures=4)
    for seed, spread in ((0, 1.0), (1, 4.0)):
        canvas = _one_pixel_canvas(lik, seed, spread).expand(256, -1, -1, -1)
        log_scale = torch.full((lik.scale_channels, 1, 1), -2.5, dtype=torch.float64)
        p = torch.exp(-lik.nll(canvas, log_scale, VALUES.view(256, 1, 1, 1)))
        assert abs(p.sum().item() - 1) < 1e-9


def test_a_drawn_scale_is_each_images_own():
    # The same mean with a narrower scale on one image: that image is surer of its pixels, the other is not.
    lik = Likelihood("logistic-scale", 3)
    canvas = torch.zeros(2, 6, 4, 4)
    canvas[1, 3:] = -3.0  # image 1's log-scale channels
    x = torch.full((2, 3, 4, 4), 128 / 255)
    nll = lik.nll(canvas, torch.full((3, 4, 4), -2.0), x)
    assert nll[1] < nll[0] - 10


@pytest.mark.parametrize("name", ["logistic-scale", "logistic-mixture"])
def test_drawn_likelihoods_train_every_parameter_and_score_in_bits_per_dim(name):
    model = tiny_model((3, 8, 10), likelihood=name, mixtures=2)
    x = torch.randint(0, 256, (5, 3, 8, 10)).float() / 255
    out = model(x)
    assert out.canvas.shape[1] == model.likelihood.canvas_channels == {"logistic-scale": 6,
                                                                       "logistic-mixture": 20}[name]
    assert (out.recon > 0).all()
    out.loss.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    images, _ = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 8, 10) and 0 <= images.min() and images.max() <= 1
    # 8 bits/dim is a uniform guess; an untrained model is near it, never far above
    assert 5 < bits_per_dim(out.loss.mean().item(), 240) < 10
