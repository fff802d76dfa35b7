"""The suite's one tiny model: its architecture, the model built from it, and the command-line options that
ask for it (from the settings' own `to_argv`). A test that needs other sizes says which, as changes."""

import torch

from draw_service.model import DRAW, DRAWConfig
from draw_service.settings import to_argv

TINY = DRAWConfig(T=4, enc_size=24, dec_size=16, z_size=6, read_n=3, write_n=4)
SHAPE = (3, 12, 20)  # (C, H, W): colour, and not square, so no axis can be confused with another


def tiny(**changes) -> DRAWConfig:
    return TINY.replace(**changes)


def tiny_model(shape=SHAPE, seed: int | None = 0, **changes) -> DRAW:
    if seed is not None:
        torch.manual_seed(seed)
    return DRAW(tiny(**changes), shape)


def tiny_argv(**changes) -> list[str]:
    """`draw-service train` options for the tiny model with `changes`; the likelihood stays the data's."""
    return to_argv(tiny(**changes), DRAWConfig())


def loss_and_grads(model, x, eps):
    model.zero_grad()
    out = model(x, eps)
    out.loss.mean().backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
