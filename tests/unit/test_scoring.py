"""Every likelihood is scored in bits/dim the same way wherever a score is given: `draw-service evaluate` and
the service's batched scorer (what /score answers)."""

import math

import pytest
import torch
from tiny import tiny_model

from draw_service import checkpoint
from draw_service.data.config import DataConfig
from draw_service.model.likelihood import NAMES
from draw_service.train.config import TrainConfig
from draw_service.train.evaluate import EvaluateConfig, evaluate_command

DISCRETE = [n for n in NAMES if n != "bernoulli"]


@pytest.mark.parametrize("likelihood", DISCRETE)
def test_evaluate_reports_bits_per_dim_for_every_8_bit_likelihood(likelihood, tmp_path):
    model = tiny_model((3, 32, 32), likelihood=likelihood, mixtures=2)
    train = TrainConfig(data=DataConfig(dataset="cifar10")).to_dict()
    folder = checkpoint.save(checkpoint.build_state(model, None, 5, train), tmp_path / "ck")
    out = evaluate_command(EvaluateConfig(checkpoint=folder, limit=20, iw_samples=3, quiet=True, device="cpu"))
    assert out["likelihood"] == likelihood and out["count"] == 20
    dims = 3 * 32 * 32
    assert out["bits_per_dim"] == pytest.approx(out["nll_bound"] / (dims * math.log(2)))
    assert out["iwae_bits_per_dim"] == pytest.approx(out["iwae_bound"] / (dims * math.log(2)))
    assert 5 < out["bits_per_dim"] < 10  # untrained: near the 8 bits of a uniform guess, a true likelihood


@pytest.mark.parametrize("likelihood", NAMES)
def test_the_services_scorer_gives_each_likelihoods_bits_per_dim_alone_or_batched(likelihood):
    # ModelRunner._score is the pass `@serve.batch` hands a batch of /score requests to (the batching itself
    # needs a Serve replica: tests/integration/test_serve.py)
    from draw_service.serve.runner import ModelRunner
    from draw_service.serve.uploads import as_model_input

    model = tiny_model((3, 8, 10), likelihood=likelihood, mixtures=2).eval()
    runner = ModelRunner(model, torch.device("cpu"))
    x = as_model_input(torch.rand(3, 3, 8, 10).numpy(), likelihood)
    batched, single = runner._score([(x, 4, 1), (x[:1], 0, 2)])
    (alone,) = runner._score([(x, 4, 1)])
    dims = 3 * 8 * 10
    for a, b in zip(batched, alone):
        assert a["nll_bound"] == pytest.approx(b["nll_bound"], rel=1e-5)  # a seed's answer, batched or not
        assert a["bits_per_dim"] == pytest.approx(a["nll_bound"] / (dims * math.log(2)))
        assert a["iwae_bits_per_dim"] == pytest.approx(a["iwae_bound"] / (dims * math.log(2)))
    assert len(single) == 1 and "iwae_bound" not in single[0]
