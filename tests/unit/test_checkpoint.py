"""The one checkpoint format: round trips and clear refusals."""

import pytest
import torch
from tiny import tiny_model

from draw_service import checkpoint


def small_model(**kw):
    return tiny_model((1, 10, 14), **{"T": 3, "enc_size": 8, "dec_size": 8, "z_size": 4, "read_n": 2, "write_n": 3,
                                      **kw})


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


def test_a_logistic_model_round_trips_with_its_scales_and_shape(tmp_path):
    model = small_model(likelihood="logistic")
    with torch.no_grad():
        model.log_scale.uniform_(-3, -1)
    folder = checkpoint.save(checkpoint.build_state(model, None, 5, {}), tmp_path / "ck")
    loaded, state = checkpoint.load_model(folder)
    assert state["image_shape"] == [1, 10, 14] and loaded.config.likelihood == "logistic"
    torch.testing.assert_close(loaded.log_scale, model.log_scale, rtol=0, atol=0)


def test_a_logistic_checkpoint_from_before_the_mixtures_loads_and_scores_as_before(tmp_path):
    # Checkpoints written before `mixtures` and the drawn likelihoods existed have no such key: they load as
    # the shared-scale logistic they were, with the same canvas and the same numbers.
    model = small_model(likelihood="logistic")
    state = checkpoint.build_state(model, None, 5, {})
    del state["model_config"]["mixtures"]
    torch.save(state, tmp_path / "old.pt")
    loaded, _ = checkpoint.load_model(tmp_path / "old.pt")
    assert loaded.config.likelihood == "logistic" and loaded.likelihood.canvas_channels == 1
    x, eps = (torch.rand(2, 1, 10, 14) * 255).round() / 255, torch.randn(3, 2, 4)
    torch.testing.assert_close(loaded(x, eps).loss, model.eval()(x, eps).loss, rtol=0, atol=0)


def test_a_version_1_checkpoint_still_loads(tmp_path):
    """Version 1 kept the image shape inside the model's configuration (and knew only the Bernoulli loss)."""
    model = small_model()
    state = checkpoint.build_state(model, None, 9, {})
    state["version"] = 1
    del state["image_shape"]
    state["model_config"] = {"channels": 1, "height": 10, "width": 14,
                             **{k: v for k, v in state["model_config"].items() if k != "likelihood"}}
    torch.save(state, tmp_path / "old.pt")
    loaded, state = checkpoint.load_model(tmp_path / "old.pt")
    assert tuple(loaded.image_shape) == (1, 10, 14) and loaded.config.likelihood == "bernoulli"
    x, eps = torch.rand(2, 1, 10, 14), torch.randn(3, 2, 4)
    torch.testing.assert_close(loaded(x, eps).loss, model.eval()(x, eps).loss, rtol=0, atol=0)


def test_retention_keeps_the_newest_and_the_best_evaluated():
    # checkpoints every 5 steps, evaluations every 10: unevaluated ones rank last
    scored = [(5, None), (10, 300.0), (15, None), (20, 250.0), (25, None), (30, 260.0), (35, None)]
    assert checkpoint.retained(scored, keep=2) == {35, 20, 30}
    assert checkpoint.retained(scored, keep=1) == {35, 20}
    assert checkpoint.retained([(5, None), (10, None)], keep=1) == {10}
    assert checkpoint.retained([], keep=3) == set()


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    from draw_service.run_dir import RunDir

    run = RunDir(str(tmp_path / "run"))
    model = small_model()
    for step in (9_999_999, 10_000_000, 10_000_001):  # past 9,999,999 the names no longer sort as text
        checkpoint.save(checkpoint.build_state(model, None, step, {}), run.checkpoint(step))
    assert [s for s, _ in run.checkpoints()] == [9_999_999, 10_000_000, 10_000_001]
    (tmp_path / "run" / "checkpoint_10000001" / "checkpoint.pt").write_bytes(b"")  # a 0-byte file
    state, uri = checkpoint.load_latest(run)
    assert state["step"] == 10_000_000 and uri.endswith("checkpoint_10000000")
    assert "unreadable checkpoint" in caplog.text and "corrupt" in caplog.text
    for step in (9_999_999, 10_000_000):
        (tmp_path / "run" / run.checkpoint_name(step) / "checkpoint.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(checkpoint.CheckpointError, match="none of the 3 checkpoints .* can be read"):
        checkpoint.load_latest(run)
    assert checkpoint.load_latest(RunDir(str(tmp_path / "empty"))) is None


def test_incomplete_checkpoints_are_named(tmp_path):
    state = checkpoint.build_state(small_model(), None, 3, {})
    del state["model"]
    torch.save(state, tmp_path / "no-weights.pt")
    with pytest.raises(checkpoint.CheckpointError, match="incomplete: it has no model"):
        checkpoint.load(tmp_path / "no-weights.pt")


def test_writes_are_all_or_nothing_and_leave_no_temporary_files(tmp_path):
    from draw_service import storage

    storage.write_bytes(str(tmp_path / "a" / "f.bin"), b"one")
    storage.write_bytes(str(tmp_path / "a" / "f.bin"), b"two")
    assert (tmp_path / "a" / "f.bin").read_bytes() == b"two" and sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "f.bin"]
    (tmp_path / "a" / "dir").mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(storage.StorageError, match="writing .*dir failed"):
        storage.write_bytes(str(tmp_path / "a" / "dir"), b"x")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["dir", "f.bin"]


def test_a_run_folder_stands_for_its_newest_readable_checkpoint_and_says_which(tmp_path, caplog):
    run = tmp_path / "run"
    for step in (10, 30, 20):
        checkpoint.save(checkpoint.build_state(small_model(), None, step, {}, {}), run / f"checkpoint_{step:07d}")
    (run / "checkpoint_0000040").mkdir()  # a checkpoint still being written: no file yet
    with caplog.at_level("INFO"):
        assert checkpoint.load(run)["step"] == 30 and checkpoint.load_model(str(run))[1]["step"] == 30
    assert f"{run} is a run folder: using its newest checkpoint, {run}/checkpoint_0000030" in caplog.text
    (run / "empty").mkdir()
    for where in (run / "empty", tmp_path / "nowhere"):
        with pytest.raises(checkpoint.CheckpointError, match=f"no checkpoint at {where}/checkpoint.pt, nor a run "
                                                             f"folder with checkpoint_"):
            checkpoint.load(where)
