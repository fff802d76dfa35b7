"""The optimised model computes the same function, and the same gradients, as the textbook one."""

import pytest
import torch

from draw_service.model import DRAW, DRAWConfig
from draw_service.model.reference import ReferenceDRAW, fast_state_dict


def pair(cfg, shape, dtype):
    torch.manual_seed(0)
    ref = ReferenceDRAW(cfg, shape).to(dtype)
    fast = DRAW(cfg, shape).to(dtype)
    fast.load_state_dict(fast_state_dict(ref))
    return ref, fast


def reference_grads_in_fast_layout(ref):
    """Map the reference's gradients through the (linear) weight mapping; bias_hh's copy is dropped
    because the fused layout holds each LSTM bias once."""
    shadow = ReferenceDRAW(ref.config, ref.image_shape).to(next(ref.parameters()).dtype)
    with torch.no_grad():
        for (name, p), q in zip(ref.named_parameters(), shadow.parameters()):
            q.copy_(torch.zeros_like(p) if name.endswith("bias_hh") else p.grad)
    return fast_state_dict(shadow)


RGB = dict(T=5, enc_size=24, dec_size=16, z_size=6)
CASES = [
    (DRAWConfig(T=6, enc_size=32, dec_size=40, z_size=8, read_n=2, write_n=5), (1, 28, 28)),
    (DRAWConfig(**RGB, attention=True, read_n=3, write_n=4), (3, 12, 20)),
    (DRAWConfig(**RGB, attention=False), (3, 12, 20)),
    (DRAWConfig(**RGB, attention=True, read_n=3, write_n=4, likelihood="logistic"), (3, 12, 20)),
    (DRAWConfig(**RGB, attention=False, likelihood="logistic"), (3, 12, 20)),
    (DRAWConfig(**RGB, attention=True, read_n=3, write_n=4, likelihood="logistic-scale"), (3, 12, 20)),
    (DRAWConfig(**RGB, attention=False, likelihood="logistic-scale"), (3, 12, 20)),
    (DRAWConfig(**RGB, attention=True, read_n=3, write_n=4, likelihood="logistic-mixture", mixtures=3), (3, 12, 20)),
    (DRAWConfig(**RGB, attention=False, likelihood="logistic-mixture", mixtures=2), (3, 12, 20)),
    (DRAWConfig(**RGB, attention=True, read_n=3, write_n=4, likelihood="logistic-mixture", mixtures=3), (1, 12, 20)),
]


@pytest.mark.parametrize("cfg,shape", CASES, ids=["mnist-attention", "rgb-nonsquare-attention", "rgb-nonsquare-plain",
                                                  "rgb-logistic-attention", "rgb-logistic-plain",
                                                  "rgb-logistic-scale-attention", "rgb-logistic-scale-plain",
                                                  "rgb-mixture-attention", "rgb-mixture-plain",
                                                  "grey-mixture-attention"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_fast_step_equals_reference_step(cfg, shape, dtype, tol):
    ref, fast = pair(cfg, shape, dtype)
    discrete = cfg.likelihood != "bernoulli"
    if discrete and dtype == torch.float64:
        # The written-out bin mass F(u) − F(l) of a pixel far from the mean is a difference of two nearly
        # equal numbers: float64 keeps about eight significant digits of it (and of its gradient).
        tol = 1e-8
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, *shape, generator=g, dtype=dtype)
    if discrete:  # 8-bit values, the two outer ones included
        x = (x * 255).round() / 255
        x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 254 / 255], dtype=dtype)
    eps = torch.randn(cfg.T, 8, cfg.z_size, generator=g, dtype=dtype)

    recon_ref, kl_ref = ref(x, eps)
    out = fast(x, eps)
    torch.testing.assert_close(out.recon, recon_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(out.kl, kl_ref, rtol=tol, atol=tol)

    (recon_ref + kl_ref).mean().backward()
    out.loss.mean().backward()
    expected = reference_grads_in_fast_layout(ref)
    for name, p in fast.named_parameters():
        grad, want = p.grad, expected[name]
        if name == "dec_proj.bias":  # the encoder's bias lives in enc_proj; its twin slot here gets the same gradient
            n = 4 * cfg.enc_size
            want = torch.cat([want[:-n], expected["enc_proj.bias"][2 * cfg.z_size :]])
        scale = want.abs().max().clamp_min(1.0)
        torch.testing.assert_close(grad / scale, want / scale, rtol=tol, atol=tol, msg=name)
