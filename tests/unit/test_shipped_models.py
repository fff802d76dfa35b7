"""The models in `models/`: weights only, small, loadable without a GPU, and as good as the README says.

Each folder is what `draw-service export` writes (checkpoint.pt + model.json, its card) plus
evaluate.json, the output of `draw-service evaluate --checkpoint models/<name> --split test --iw-samples 10`
on the whole test split, which is where the README's numbers come from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from draw_service.sample import SampleConfig, sample_command
from draw_service.train.evaluate import EvaluateConfig, evaluate_command

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (ROOT / "models").glob("*") if (p / "model.json").is_file())
MB = 2**20
# The first 500 test images stand in for the 10,000 here: per-image bounds spread by about 25 nats, so the
# mean of 500 sits within about 1.1 nats (one standard error) of the whole split's; 6 is five of them.
SUBSET, TOLERANCE_NATS = 500, 6.0


def test_both_of_the_papers_mnist_models_are_shipped():
    assert {"mnist-attention", "mnist-no-attention"} <= {p.name for p in SHIPPED}
    attention = {p.name: json.loads((p / "model.json").read_text())["model"]["attention"] for p in SHIPPED}
    assert attention["mnist-attention"] is True and attention["mnist-no-attention"] is False


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_model_is_fp32_weights_with_its_card_and_nothing_else(folder):
    path = folder / "checkpoint.pt"
    assert path.stat().st_size < 16 * MB  # the attention-free paper model is about 3 M parameters: 12 MB
    state = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and data, no pickled code
    assert state["optimizer"] is None
    assert {v.dtype for v in state["model"].values()} == {torch.float32}
    card = json.loads((folder / "model.json").read_text())
    assert card["train_command"].startswith("draw-service train ")
    assert card["hardware"] and card["metrics"]["train_minutes"] > 0
    evaluated = json.loads((folder / "evaluate.json").read_text())
    assert evaluated["split"] == "test" and evaluated["step"] == card["step"]
    assert evaluated["count"] == {"mnist": 10_000, "cifar10": 1_000}[card["data"]["dataset"]]


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_the_readme_quotes_what_the_shipped_model_scores(folder):
    evaluated = json.loads((folder / "evaluate.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert f"models/{folder.name}" in readme
    figure = f"{evaluated['bits_per_dim']:.3f}" if evaluated["likelihood"] == "logistic" else \
        f"{evaluated['nll_bound']:.2f}"
    assert figure in readme


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_model_scores_on_a_cpu_what_its_evaluation_says(folder):
    evaluated = json.loads((folder / "evaluate.json").read_text())
    out = evaluate_command(EvaluateConfig(checkpoint=str(folder), split="test", limit=SUBSET, device="cpu",
                                          quiet=True))
    assert out["count"] == min(SUBSET, evaluated["count"])
    dims = math.prod(json.loads((folder / "model.json").read_text())["image_shape"])
    assert abs(out["nll_bound"] - evaluated["nll_bound"]) < TOLERANCE_NATS * max(1.0, dims / 784)


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_model_draws_without_a_gpu(folder, tmp_path):
    out = sample_command(SampleConfig(checkpoint=str(folder), n=16, out=str(tmp_path / "s.png"), device="cpu"))
    import numpy as np
    from PIL import Image

    with Image.open(tmp_path / "s.png") as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert out and pixels.std() > 10  # drawn strokes, not a blank or uniform grid
