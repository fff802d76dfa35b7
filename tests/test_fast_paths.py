"""The switchable speed paths (torch.compile of the step, bf16 autocast, the large-batch learning-rate
rule), checked for correctness on the CPU."""

import pytest
import torch

from draw_service.model import DRAW, DRAWConfig
from draw_service.train.config import TrainConfig

CFG = DRAWConfig(height=12, width=20, channels=3, T=4, enc_size=24, dec_size=16, z_size=6, read_n=3, write_n=4)


def loss_and_grads(model, x, eps):
    model.zero_grad()
    out = model(x, eps)
    out.loss.mean().backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("attention", [True, False])
def test_compiled_step_gives_the_eager_numbers(attention):
    cfg = DRAWConfig(**{**CFG.to_dict(), "attention": attention})
    torch.manual_seed(0)
    eager = DRAW(cfg)
    compiled = DRAW(cfg)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_step()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 12, 20, generator=g)
    eps = torch.randn(cfg.T, 8, cfg.z_size, generator=g)
    loss_e, grads_e = loss_and_grads(eager, x, eps)
    loss_c, grads_c = loss_and_grads(compiled, x, eps)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-4)
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-4, atol=1e-5, msg=name)


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    model = DRAW(CFG)
    x, eps = torch.rand(16, 3, 12, 20), torch.randn(CFG.T, 16, CFG.z_size)
    loss32, _ = loss_and_grads(model, x, eps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, eps)
    out.loss.mean().backward()
    assert out.loss.dtype == torch.float32  # the loss terms are reduced in fp32
    assert torch.allclose(out.loss.detach(), loss32, rtol=2e-2)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_learning_rate_rule_for_large_batches():
    assert TrainConfig(batch_size=400, lr=1e-3, lr_scaling="linear").effective_lr() == pytest.approx(4e-3)
    assert TrainConfig(batch_size=400, lr=1e-3, lr_scaling="sqrt").effective_lr() == pytest.approx(2e-3)
    assert TrainConfig(batch_size=400, lr=1e-3).effective_lr() == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lr_scaling"):
        TrainConfig(lr_scaling="cubic").validate()
