"""The discretised logistic likelihood for 8-bit images: a true distribution over the 256 values."""

import math

import torch

from draw_service.model import DRAW, DRAWConfig
from draw_service.model.likelihood import bits_per_dim, discretized_logistic_log_prob, logistic_nll

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
    torch.manual_seed(0)
    model = DRAW(DRAWConfig(T=3, enc_size=16, dec_size=16, z_size=4, read_n=3, write_n=4, likelihood="logistic"),
                 (3, 8, 10))
    x = torch.randint(0, 256, (5, 3, 8, 10)).float() / 255
    out = model(x)
    manual = logistic_nll(out.canvas, model.log_scale, x)
    torch.testing.assert_close(out.recon, manual)
    assert (out.recon > 0).all()  # a probability of a discrete value is at most one
    out.loss.mean().backward()
    assert model.log_scale.grad.abs().sum() > 0
    assert bits_per_dim(240 * math.log(2), 240) == 1.0
