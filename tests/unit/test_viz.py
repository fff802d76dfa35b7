"""Pictures of the model: small animations for every evaluation, both windows on a reconstruction."""

import io

import torch
from PIL import Image
from tiny import tiny_model

from draw_service.model import DRAW, DRAWConfig
from draw_service.viz import READ_COLOUR, WINDOW_COLOUR, drawing_frames, gif_bytes, sample_pictures, thinned


def test_the_animation_logged_at_every_evaluation_stays_small():
    model = DRAW(DRAWConfig(), (1, 28, 28))  # the paper's model: T = 64
    grid, gif = sample_pictures(model, 64, generator=torch.Generator().manual_seed(0))
    assert grid.size == (484, 484)
    with Image.open(io.BytesIO(gif)) as im:
        assert im.n_frames <= 33
    assert len(gif) < 400_000  # it was 2.6 MB per evaluation


def test_a_reconstruction_shows_the_read_window_in_green_and_the_write_window_in_red():
    torch.manual_seed(0)
    model = tiny_model((1, 20, 20), T=3, enc_size=16, z_size=4)
    record = model.reconstruct(torch.rand(1, 1, 20, 20), generator=torch.Generator().manual_seed(0))
    frames = drawing_frames(record, write_n=4, read_n=3, scale=6)
    assert len(frames) == 3
    colours = {c for _, c in frames[0].getcolors(100_000)}
    assert WINDOW_COLOUR in colours and READ_COLOUR in colours
    with Image.open(io.BytesIO(gif_bytes(frames))) as im:
        assert im.n_frames == 3


def test_a_thinned_drawing_keeps_the_first_images_and_ends_on_the_finished_canvas():
    model = DRAW(DRAWConfig(T=10, enc_size=16, dec_size=16, z_size=4), (1, 12, 12))
    _, record = model.sample(8, generator=torch.Generator().manual_seed(0), record=True)
    small = thinned(record, images=3, max_frames=4)
    assert small.canvases.shape == (4, 3, 1, 12, 12)  # steps 0, 3, 6, 9 of 10
    assert torch.equal(small.canvases[-1], record.canvases[-1, :3])  # the finished drawing is the last frame
    assert small.write_windows.gx.shape == (4, 3)
    assert record.canvases.shape[:2] == (10, 8)  # the record itself is left as it was
