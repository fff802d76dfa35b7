"""The attention maths (equations 19–29) against hand-computed expectations."""

import torch

from draw_service.model.filterbank import (
    FilterGrid,
    filterbank,
    grid_offsets,
    pixel_coords,
    read_glimpse,
    window_from_params,
    write_patch,
)


def params(gx_t=0.0, gy_t=0.0, log_sigma2=0.0, log_delta=0.0, log_gamma=0.0, batch=1):
    return torch.tensor([[gx_t, gy_t, log_sigma2, log_delta, log_gamma]], dtype=torch.float64).repeat(batch, 1)


def test_offsets_are_symmetric_about_the_centre():
    # μ^i = g + (i − N/2 − 0.5)δ, i = 1..N: for N = 2 the centres sit at g ± δ/2, for N = 3 at g − δ, g, g + δ.
    assert grid_offsets(2).tolist() == [-0.5, 0.5]
    assert grid_offsets(3).tolist() == [-1.0, 0.0, 1.0]
    assert grid_offsets(4).tolist() == [-1.5, -0.5, 0.5, 1.5]


def test_centre_and_stride_follow_the_equations_on_a_non_square_image():
    H, W, N = 20, 32, 5
    win = window_from_params(params(gx_t=0.5, gy_t=-0.5, log_delta=0.0), H, W, N)
    assert torch.allclose(win.gx, torch.tensor([(W + 1) / 2 * 1.5], dtype=torch.float64))
    assert torch.allclose(win.gy, torch.tensor([(H + 1) / 2 * 0.5], dtype=torch.float64))
    assert torch.allclose(win.delta, torch.tensor([(max(H, W) - 1) / (N - 1)], dtype=torch.float64))
    # g̃ = 0 is the exact centre in pixel coordinates 1..A, 1..B.
    mid = window_from_params(params(), H, W, N)
    assert mid.gx.item() == (W + 1) / 2 and mid.gy.item() == (H + 1) / 2


def test_filter_rows_sum_to_one():
    # Windows whose grid lies on the image (|g̃| ≤ 0.4, δ̃ ≤ 0.5) with any reasonable σ.
    grid = FilterGrid(20, 32, 4).double()
    g = torch.Generator().manual_seed(0)
    p = torch.stack([torch.rand(16, generator=g) * 0.8 - 0.4, torch.rand(16, generator=g) * 0.8 - 0.4,
                     torch.randn(16, generator=g), torch.rand(16, generator=g) * -3 - 0.7,
                     torch.randn(16, generator=g)], 1).double()
    _, Fx, Fy = grid(p)
    assert Fx.shape == (16, 4, 32) and Fy.shape == (16, 4, 20)
    assert torch.allclose(Fx.sum(-1), torch.ones(16, 4, dtype=torch.float64))
    assert torch.allclose(Fy.sum(-1), torch.ones(16, 4, dtype=torch.float64))
    # Far off the image every weight underflows; ε keeps the row at zero instead of 0/0.
    _, Fx, _ = grid(params(gx_t=40.0, log_sigma2=-5.0))
    assert torch.isfinite(Fx).all() and Fx.sum() < 1e-6


def test_filter_peaks_at_its_centre():
    # A narrow Gaussian centred on pixel coordinate 7 puts its mass on pixel 7 (index 6).
    F = filterbank(torch.tensor([7.0]), torch.tensor([1.0]), torch.tensor([0.01]), grid_offsets(1), pixel_coords(12))
    assert F.argmax().item() == 6 and F[0, 0, 6] > 0.999


def test_read_picks_the_pixel_under_a_sharp_window():
    # One bright pixel at row 4, column 9 (0-based) of a 10×16 image; a 1×1 window at pixel coords (10, 5)
    # with a tiny σ reads exactly that pixel, whichever channel it is in.
    H, W = 10, 16
    x = torch.zeros(1, 3, H, W, dtype=torch.float64)
    x[0, 1, 4, 9] = 1.0
    gx_t = 2 * 10 / (W + 1) - 1
    gy_t = 2 * 5 / (H + 1) - 1
    grid = FilterGrid(H, W, 1).double()
    _, Fx, Fy = grid(params(gx_t, gy_t, log_sigma2=-6.0))
    g = read_glimpse(x, Fx, Fy)
    assert g.shape == (1, 3, 1, 1)
    assert torch.allclose(g[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-6)


def test_write_paints_the_patch_where_the_window_is():
    H, W, N = 12, 20, 3
    grid = FilterGrid(H, W, N).double()
    # Centre at pixel (x=6, y=4), stride 1 pixel, sharp filters: the 3×3 patch lands on columns 5..7, rows 3..5.
    gx_t, gy_t = 2 * 6 / (W + 1) - 1, 2 * 4 / (H + 1) - 1
    log_delta = torch.log(torch.tensor((N - 1) / (max(H, W) - 1))).item()
    win, Fx, Fy = grid(params(gx_t, gy_t, log_sigma2=-6.0, log_delta=log_delta))
    patch = torch.arange(1, 10, dtype=torch.float64).view(1, 1, 3, 3).repeat(1, 2, 1, 1)
    canvas = write_patch(patch, Fx, Fy)
    assert canvas.shape == (1, 2, H, W)
    assert torch.allclose(canvas[0, :, 2:5, 4:7], patch[0], atol=1e-6)
    canvas[0, :, 2:5, 4:7] = 0
    assert canvas.abs().max() < 1e-6


def test_extreme_window_parameters_stay_finite_with_finite_gradients():
    grid = FilterGrid(28, 28, 5)
    p = torch.tensor([[1e6, -1e6, -1e4, 1e4, 1e4], [0.0, 0.0, 1e4, -1e4, -1e4], [50.0, 3.0, -88.0, 88.0, -88.0]],
                     requires_grad=True)
    win, Fx, Fy = grid(p)
    x = torch.rand(3, 1, 28, 28)
    written = write_patch(torch.ones(3, 1, 5, 5), Fx, Fy) / win.gamma[:, None, None, None]
    out = read_glimpse(x, Fx, Fy).sum() * win.gamma.sum() + written.sum()
    assert torch.isfinite(out)
    out.backward()
    assert torch.isfinite(p.grad).all()
