"""What a search varies: patch sizes, latent size, hidden size, T and the learning rate.

Centred on the paper's SVHN model (T = 32, 800 LSTM units, z = 100, 12×12 read and write). The seed
report's findings set the ranges: patches under 7×7 blur, z beyond ~200 adds noise, more hidden units
help at a cost in time. The smoke space is tiny, for a CPU run in minutes.

The likelihood is not searched: a trial's is the base run's, `auto` by default, which on 8-bit colour is the
mixture of logistics with colour coupling that won the CIFAR-10 probes (README, "Colour"; every probe with
a per-pixel scale or the shared one trailed it by 0.2-0.4 bits/dim at equal time). The colour spaces'
learning rates lean to the 3e-3 those probes favoured.
"""

from __future__ import annotations

from typing import Any

from ..train.config import TrainConfig

PAPER_SVHN = {"read_n": 12, "write_n": 12, "z_size": 100, "hidden": 800, "T": 32, "lr": 1e-3}


def search_space(kind: str) -> dict[str, Any]:
    from ray import tune

    if kind == "svhn":
        return {
            "read_n": tune.choice([6, 8, 10, 12, 14, 16]),
            "write_n": tune.choice([6, 8, 10, 12, 14, 16]),
            "z_size": tune.choice([50, 100, 150, 200, 300]),
            "hidden": tune.choice([400, 600, 800, 1000]),
            "T": tune.choice([16, 24, 32, 48]),
            "lr": tune.loguniform(5e-4, 4e-3),
        }
    if kind == "mnist-demo":  # small, fast models that learn digits within minutes on a CPU
        return {
            "read_n": tune.choice([2, 3]),
            "write_n": tune.choice([4, 5]),
            "z_size": tune.choice([10, 16]),
            "hidden": tune.choice([64, 128]),
            "T": tune.choice([8, 10, 12]),
            "lr": tune.loguniform(2e-3, 8e-3),
        }
    if kind == "colour-cpu":  # 32x32 colour (CIFAR-10, SVHN) at a size a CPU searches in under an hour
        return {
            "read_n": tune.choice([4, 6, 8]),
            "write_n": tune.choice([6, 8, 10, 12]),
            "z_size": tune.choice([16, 32, 64]),
            "hidden": tune.choice([128, 256]),
            "T": tune.choice([8, 12, 16]),
            "lr": tune.loguniform(1.5e-3, 5e-3),
        }
    if kind == "smoke":
        return {
            "read_n": tune.choice([2, 3, 4]),
            "write_n": tune.choice([3, 4, 5]),
            "z_size": tune.choice([4, 8, 16]),
            "hidden": tune.choice([16, 32, 48]),
            "T": tune.choice([3, 4, 6]),
            "lr": tune.loguniform(1e-3, 1e-2),
        }
    raise ValueError(f"unknown search space {kind!r}: use svhn, mnist-demo, colour-cpu or smoke")


def starting_point(kind: str) -> dict[str, Any]:
    """The first trial: the paper's model, or a stand-in of the space's size, so the search starts from it."""
    return {"svhn": dict(PAPER_SVHN),
            "mnist-demo": _point(TrainConfig().with_preset("quick")),  # the quick preset is this space's start
            "colour-cpu": {"read_n": 6, "write_n": 8, "z_size": 32, "hidden": 256, "T": 12, "lr": 3e-3},
            "smoke": {"read_n": 3, "write_n": 4, "z_size": 8, "hidden": 32, "T": 4, "lr": 3e-3}}[kind]


def _point(cfg: TrainConfig) -> dict[str, Any]:
    m = cfg.model
    return {"read_n": m.read_n, "write_n": m.write_n, "z_size": m.z_size, "hidden": m.enc_size, "T": m.T, "lr": cfg.lr}


def apply(params: dict[str, Any], base: TrainConfig) -> TrainConfig:
    """The training configuration of one trial: `base` with the trial's hyperparameters."""
    model = base.model.replace(read_n=int(params["read_n"]), write_n=int(params["write_n"]),
                               z_size=int(params["z_size"]), enc_size=int(params["hidden"]),
                               dec_size=int(params["hidden"]), T=int(params["T"]), attention=True)
    return base.replace(model=model, lr=float(params["lr"]))
