"""torch.compile of the drawing steps (Inductor compiles C++ here, which takes a while): the compiled
blocks give the eager numbers for the loss, every gradient, the per-step record and generation."""

import pytest
import torch
from tiny import SHAPE, TINY, loss_and_grads

from draw_service.model import DRAW


# Small graphs: with a cold cache Inductor's C++ compilation dominates (185 s for attention at T = 4 in
# blocks of 3 and 1; 70-100 s for a 1- or 2-step graph). Attention: one 1-step graph called twice, so the
# state passes between compiled calls; without attention, 2 steps per graph over T = 3 also runs the
# shorter last block (its own graph).
@pytest.mark.parametrize("attention, T, steps_per_call", [(True, 2, 1), (False, 3, 2)])
def test_compiled_step_gives_the_eager_numbers(attention, T, steps_per_call):
    cfg = TINY.replace(attention=attention, T=T)
    torch.manual_seed(0)
    eager = DRAW(cfg, SHAPE)
    compiled = DRAW(cfg, SHAPE)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_step(steps_per_call=steps_per_call)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 12, 20, generator=g)
    eps = torch.randn(cfg.T, 8, cfg.z_size, generator=g)
    loss_e, grads_e = loss_and_grads(eager, x, eps)
    loss_c, grads_c = loss_and_grads(compiled, x, eps)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-4)
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-4, atol=1e-5, msg=name)
    # The per-step record (animations) through the compiled blocks: every step, the same canvases.
    with torch.no_grad():
        rec_e, rec_c = eager(x, eps, record=True).record, compiled(x, eps, record=True).record
    assert rec_c.canvases.shape == (cfg.T, 8, 3, 12, 20)
    torch.testing.assert_close(rec_c.canvases, rec_e.canvases, rtol=1e-4, atol=1e-5)
    if attention:
        torch.testing.assert_close(rec_c.read_windows.gx, rec_e.read_windows.gx, rtol=1e-4, atol=1e-4)
    # Generation runs through compiled blocks as well.
    with torch.no_grad():
        (img_e, gen_e), (img_c, gen_c) = eager.decode(eps, record=True), compiled.decode(eps, record=True)
    torch.testing.assert_close(img_c, img_e, rtol=1e-4, atol=1e-5)
    assert gen_c.canvases.shape == (cfg.T, 8, 3, 12, 20)
    torch.testing.assert_close(gen_c.canvases, gen_e.canvases, rtol=1e-4, atol=1e-5)
