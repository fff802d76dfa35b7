"""DRAW as a whole: shapes, the loss terms, gradients, sampling, bad input."""

import pytest
import torch
from tiny import SHAPE, TINY, tiny, tiny_model

from draw_service.model import DRAW, DRAWConfig


def build(shape=SHAPE, **kw):
    return tiny_model(shape, seed=None, **kw)


@pytest.mark.parametrize("attention", [True, False])
def test_forward_on_non_square_rgb_images(attention):
    cfg = tiny(attention=attention)
    model = DRAW(cfg, SHAPE)
    x = torch.rand(7, 3, 12, 20)
    out = model(x, record=True)
    assert out.recon.shape == (7,) and out.kl.shape == (7,)
    assert (out.recon > 0).all() and (out.kl >= 0).all()
    assert out.canvas.shape == (7, 3, 12, 20)
    assert out.record.canvases.shape == (4, 7, 3, 12, 20)
    # read hands the encoder 2·C·N² values with attention, 2·C·H·W without
    assert cfg.read_size(model.image_shape) == (2 * 3 * 9 if attention else 2 * 3 * 12 * 20)
    assert model.enc_in.weight.shape[1] == cfg.read_size(model.image_shape)
    if attention:
        assert out.record.write_windows.gx.shape == (4, 7)
        assert out.record.read_windows.gamma.shape == (4, 7)


def test_recon_is_the_bernoulli_nll_of_the_final_canvas():
    model = build()
    x = torch.rand(5, 3, 12, 20)
    out = model(x)
    p = torch.sigmoid(out.canvas)
    manual = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)
    assert torch.allclose(out.recon, manual, rtol=1e-4)


def test_analytic_kl_matches_a_monte_carlo_estimate():
    # E_q[log q(z|x) − log p(z)] estimated from many posterior samples equals the expected analytic KL.
    torch.manual_seed(0)
    model = build((1, 12, 20), T=3).double()
    x = torch.rand(1, 1, 12, 20, dtype=torch.float64).repeat(40_000, 1, 1, 1)
    with torch.no_grad():
        out = model(x, generator=torch.Generator().manual_seed(1))
        mc = -(out.log_weight() + out.recon)  # log q − log p per sample
    analytic = out.kl.mean()
    stderr = mc.std() / len(mc) ** 0.5
    assert abs(mc.mean() - analytic) < 4 * stderr + 1e-3, (mc.mean().item(), analytic.item(), stderr.item())


@pytest.mark.parametrize("attention", [True, False])
def test_gradients_reach_every_parameter(attention):
    model = build(attention=attention)
    model(torch.rand(6, 3, 12, 20)).loss.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_samples_have_the_right_shape_and_range_and_follow_the_seed():
    model = build()
    images, rec = model.sample(9, generator=torch.Generator().manual_seed(3), record=True)
    assert images.shape == (9, 3, 12, 20)
    assert images.min() >= 0 and images.max() <= 1
    assert rec.canvases.shape == (4, 9, 3, 12, 20) and rec.read_windows is None
    assert torch.allclose(rec.canvases[-1], images)
    again, _ = model.sample(9, generator=torch.Generator().manual_seed(3))
    other, _ = model.sample(9, generator=torch.Generator().manual_seed(4))
    assert torch.equal(images, again) and not torch.equal(images, other)


def test_decoding_does_not_depend_on_the_rest_of_the_batch():
    model = build()
    eps = torch.randn(TINY.T, 10, TINY.z_size)
    together, _ = model.decode(eps)
    alone, _ = model.decode(eps[:, 3:4])
    assert torch.allclose(together[3:4], alone, atol=1e-6)


def test_generation_runs_the_decoder_alone():
    model = build()
    for p in list(model.enc_in.parameters()) + list(model.enc_proj.parameters()):
        p.data.fill_(float("nan"))  # the encoder must not be touched
    images, _ = model.sample(3)
    assert torch.isfinite(images).all()


def test_wrong_image_shapes_are_refused_clearly():
    model = build()
    with pytest.raises(ValueError, match=r"shape \(batch, 3, 12, 20\).*got \(2, 1, 12, 20\)"):
        model(torch.rand(2, 1, 12, 20))
    with pytest.raises(ValueError, match="float images"):
        model(torch.zeros(2, 3, 12, 20, dtype=torch.uint8))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0)
    T, z = TINY.T, TINY.z_size
    for eps in (torch.randn(T + 1, 2, z), torch.randn(T, 2, z + 1), torch.randn(T, 0, z), torch.randn(T, z)):
        with pytest.raises(ValueError, match=rf"latents of shape \({T}, n, {z}\) with n >= 1"):
            model.decode(eps)
    with pytest.raises(ValueError, match="positive integer"):
        DRAWConfig(T=0)
    with pytest.raises(ValueError, match="unknown DRAW model option"):
        DRAWConfig.from_dict({"T": 3, "hidden": 5})
    # The image shape comes at build time, and the patches must fit it (a 30×30 write fits 32×32 images).
    with pytest.raises(ValueError, match=r"write_n=40 are larger than the 32x32 image"):
        DRAW(DRAWConfig(write_n=40), (3, 32, 32))
    assert DRAW(DRAWConfig(T=2, enc_size=8, dec_size=8, z_size=2, write_n=30), (3, 32, 32)).write_size == 3 * 900
    with pytest.raises(ValueError, match="settle 'auto'"):
        DRAW(DRAWConfig(likelihood="auto"), (1, 28, 28))


def test_extreme_decoder_outputs_give_no_nan():
    model = build()
    with torch.no_grad():
        model.dec_proj.bias.mul_(1e4)
        model.dec_proj.weight.mul_(1e3)
    out = model(torch.rand(4, 3, 12, 20))
    out.loss.mean().backward()
    assert torch.isfinite(out.loss).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("attention", [True, False])
def test_generation_as_one_lstm_call_gives_the_step_by_step_images(attention):
    torch.manual_seed(0)
    model = build(attention=attention)
    with torch.no_grad():
        model.dec_proj.bias.normal_()  # a trained-looking decoder: every block of the bias matters
    eps = torch.randn(TINY.T, 9, TINY.z_size)
    fast, fast_rec = model.decode(eps, record=True)
    slow, slow_rec = model.decode_stepwise(eps, record=True)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_rec.canvases, slow_rec.canvases, rtol=1e-5, atol=1e-6)
    if attention:
        for a, b in zip(fast_rec.write_windows, slow_rec.write_windows):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    else:
        assert fast_rec.write_windows is None
    torch.testing.assert_close(model.decode(eps)[0], slow, rtol=1e-5, atol=1e-6)
