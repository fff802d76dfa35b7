"""The one checkpoint format: round trips and clear refusals."""

import pytest
import torch

from draw_service import checkpoint
from draw_service.model import DRAW, DRAWConfig


def small_model():
    torch.manual_seed(0)
    return DRAW(DRAWConfig(height=10, width=14, channels=1, T=3, enc_size=8, dec_size=8, z_size=4, read_n=2, write_n=3))


def test_round_trip_gives_identical_outputs(tmp_path):
    model = small_model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(4, 1, 10, 14)).loss.mean().backward()
    opt.step()
    state = checkpoint.build_state(model, opt, 7, {"note": "test"}, {"nll_bound": 1.5})
    folder = checkpoint.save(state, tmp_path / "ck")
    loaded, state = checkpoint.load_model(folder)
    assert state["step"] == 7 and state["metrics"]["nll_bound"] == 1.5 and state["optimizer"]["state"]
    x = torch.rand(5, 1, 10, 14)
    eps = torch.randn(3, 5, 4)
    torch.testing.assert_close(loaded(x, eps).loss, model.eval()(x, eps).loss, rtol=0, atol=0)
    torch.testing.assert_close(loaded.decode(eps)[0], model.decode(eps)[0], rtol=0, atol=0)
    # the file itself also names the checkpoint, and plain torch.load(weights_only=True) reads it
    assert checkpoint.load(tmp_path / "ck" / "checkpoint.pt")["step"] == 7
    assert torch.load(tmp_path / "ck" / "checkpoint.pt", weights_only=True)["format"] == checkpoint.FORMAT


def test_corrupt_truncated_foreign_and_missing_checkpoints_are_refused(tmp_path):
    model = small_model()
    good = checkpoint.to_bytes(checkpoint.build_state(model, None, 1, {}))
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.pt").write_bytes(b"\x00garbage" * 100)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "foreign.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(checkpoint.CheckpointError, match="truncated.pt is corrupt"):
        checkpoint.load(tmp_path / "truncated.pt")
    with pytest.raises(checkpoint.CheckpointError, match="noise.pt is corrupt"):
        checkpoint.load(tmp_path / "noise.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a draw-service checkpoint.*state_dict"):
        checkpoint.load(tmp_path / "foreign.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a draw-service checkpoint"):
        checkpoint.load(tmp_path / "tensor.pt")
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "absent")
    state = checkpoint.build_state(model, None, 1, {})
    state["model_config"]["enc_size"] = 99
    checkpoint.save(state, tmp_path / "mismatch")
    with pytest.raises(checkpoint.CheckpointError, match="do not fit"):
        checkpoint.load_model(tmp_path / "mismatch")
