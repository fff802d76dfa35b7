"""Local training (no Ray) on real MNIST, through the command line a user types."""

import json

import pytest
import torch
from tiny import tiny_argv, tiny_model

from draw_service import checkpoint
from draw_service.cli import main
from draw_service.data.batches import binarize_fixed
from draw_service.device import pick_precision
from draw_service.model import DRAW, DRAWConfig
from draw_service.train.evaluate import bound_sums, bounds_from_sums

# large enough to learn visibly in a few hundred steps
TINY = [*tiny_argv(T=6, enc_size=48, dec_size=48, z_size=8, read_n=2), "--no-wandb", "--quiet"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_few_hundred_steps_lower_the_test_bound_clearly(tmp_path, capsys, mnist):
    code, out, _ = run_cli(capsys, "train", "--out", str(tmp_path / "run"), "--steps", "300", "--eval-every", "150",
                           "--batch-size", "50", "--train-limit", "6000", "--test-limit", "500", *TINY)
    assert code == 0
    result = json.loads(out)
    halfway = json.loads((tmp_path / "run" / "metrics" / "0000150.json").read_text())
    state = checkpoint.load(tmp_path / "run" / "checkpoint_0000300")
    torch.manual_seed(0)
    untrained = DRAW(DRAWConfig.from_dict(state["model_config"]), state["image_shape"])
    before = bounds_from_sums(bound_sums(untrained, binarize_fixed(mnist.test[:500])))["nll_bound"]
    assert result["step"] == 300
    # binarised MNIST: the untrained model scores ~545 nats; 300 small steps at least halve that
    assert result["nll_bound"] < 0.5 * before, (before, result)
    assert result["nll_bound"] < halfway["nll_bound"]
    assert (tmp_path / "run" / "media" / "samples_0000300.png").stat().st_size > 0
    assert (tmp_path / "run" / "media" / "drawing_0000300.gif").stat().st_size > 0


def test_train_evaluate_sample_and_resume(tmp_path, capsys, caplog):
    run = tmp_path / "run"
    # a KL warm-up that the interruption cuts in two must resume where it was, like the learning rate
    common = ["--batch-size", "20", "--train-limit", "400", "--test-limit", "100", "--eval-every", "10",
              "--kl-warmup-steps", "15", *TINY]
    assert run_cli(capsys, "train", "--out", str(run), "--steps", "10", *common)[0] == 0
    assert json.loads((run / "metrics" / "0000010.json").read_text())["kl_weight"] == pytest.approx(10 / 15)
    # a second run into the same folder must not silently overwrite it
    code, _, err = run_cli(capsys, "train", "--out", str(run), "--steps", "20", *common)
    assert code == 2 and "--resume" in err
    caplog.set_level("INFO", logger="draw_service")
    code, out, _ = run_cli(capsys, "train", "--out", str(run), "--steps", "20", "--resume", *common)
    assert code == 0 and json.loads(out)["step"] == 20 and json.loads(out)["kl_weight"] == 1.0
    # --precision auto (the default): bf16 only where this CPU computes it natively; the log and reports say which
    precision, why = pick_precision("auto", torch.device("cpu"))
    assert json.loads(out)["precision"] == precision and f"precision {precision} ({why})" in caplog.text

    # the resumed run is exactly the run that was never interrupted
    straight = tmp_path / "straight"
    assert run_cli(capsys, "train", "--out", str(straight), "--steps", "20", *common)[0] == 0
    a = checkpoint.load(run / "checkpoint_0000020")["model"]
    b = checkpoint.load(straight / "checkpoint_0000020")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    ck = str(run / "checkpoint_0000020")
    code, out, _ = run_cli(capsys, "evaluate", "--checkpoint", ck, "--limit", "50", "--iw-samples", "5", "--quiet")
    ev = json.loads(out)
    assert code == 0 and ev["count"] == 50 and ev["binarized"] is True
    assert 0 < ev["iwae_bound"] < ev["nll_bound"] + 5  # IWAE is tighter, up to sampling noise

    code, out, _ = run_cli(capsys, "sample", "--checkpoint", ck, "-n", "9", "--out", str(tmp_path / "g.png"),
                           "--gif", str(tmp_path / "d.gif"))
    assert code == 0 and json.loads(out)["precision"] == precision
    from PIL import Image

    with Image.open(tmp_path / "d.gif") as gif:
        assert gif.n_frames == 6  # one frame per drawing step
    with Image.open(tmp_path / "g.png") as grid:
        assert grid.size[0] > 28 * 3


@pytest.mark.parametrize("args,message", [
    (["--dataset", "nosuch"], "unknown dataset"),
    (["--batch-size", "0"], "batch_size must be"),
])
def test_bad_training_input_gives_a_clear_error(tmp_path, capsys, args, message):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--steps", "1", *TINY, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_evaluate_refuses_a_foreign_checkpoint(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"nonsense")
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(tmp_path / "x.pt"))
    assert code == 2 and "corrupt" in err


def test_the_data_decides_the_image_shape(tmp_path, capsys):
    """A 30×30 write patch fits 32×32 colour images: the architecture is checked against the data's shape."""
    code, out, err = run_cli(capsys, "train", "--dataset", "cifar10", "--out", str(tmp_path / "c"), "--steps", "2",
                             "--batch-size", "10", "--train-limit", "100", "--test-limit", "20", "--T", "2",
                             "--enc-size", "8", "--dec-size", "8", "--z-size", "2", "--write-n", "30", "--no-wandb",
                             "--quiet")
    assert code == 0, err
    state = checkpoint.load(tmp_path / "c" / "checkpoint_0000002")
    assert state["image_shape"] == [3, 32, 32] and state["model_config"]["write_n"] == 30
    assert state["model_config"]["likelihood"] == "logistic-mixture"  # 8-bit colour: auto picks the discrete mixture
    assert 0 < json.loads(out)["bits_per_dim"] < 9  # a real likelihood, near the 8 bits of a uniform guess untrained


def test_checkpoints_between_evaluations_never_cost_the_best_evaluated_one(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--out", str(run), "--steps", "30", "--eval-every", "10",
                             "--checkpoint-every", "5", "--keep-checkpoints", "1", "--batch-size", "20",
                             "--train-limit", "400", "--test-limit", "40", *TINY)
    assert code == 0, err
    bounds = {s: json.loads((run / "metrics" / f"{s:07d}.json").read_text()).get("nll_bound") for s in (10, 20, 30)}
    best = min(bounds, key=bounds.get)
    kept = sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint_"))
    assert kept == sorted({f"checkpoint_{best:07d}", "checkpoint_0000030"}), (kept, bounds)


def test_an_unreadable_newest_checkpoint_resumes_from_the_one_before(tmp_path, capsys, caplog):
    run = tmp_path / "run"
    common = ["--batch-size", "20", "--train-limit", "400", "--test-limit", "40", "--eval-every", "10", *TINY]
    assert run_cli(capsys, "train", "--out", str(run), "--steps", "20", *common)[0] == 0
    (run / "checkpoint_0000020" / "checkpoint.pt").write_bytes(b"")  # a kill mid-write left 0 bytes
    (run / "checkpoint_0000020" / "checkpoint.pt.tmp-0badf00d").write_bytes(b"partial")
    code, out, err = run_cli(capsys, "train", "--out", str(run), "--steps", "30", "--resume", *common)
    assert code == 0 and "Traceback" not in err
    assert json.loads(out)["resumed_from"] == 10
    assert "unreadable checkpoint" in caplog.text
    assert not list(run.glob("*/*.tmp-*"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_without_one_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), "--steps", "1", "--device", "cuda", *TINY)
    assert code == 2 and "no CUDA GPU is visible" in err and len(err.strip().splitlines()) == 1


def test_evaluating_a_checkpoint_that_does_not_say_its_data(tmp_path, capsys):
    torch.manual_seed(0)
    model = tiny_model((1, 28, 28), T=2, enc_size=8, dec_size=8, z_size=2, read_n=2, write_n=3)
    ck = checkpoint.save(checkpoint.build_state(model, None, 1, {}), tmp_path / "ck")
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", ck, "--limit", "20", "--quiet")
    assert code == 2 and "does not say which data" in err and "--dataset" in err
    code, out, _ = run_cli(capsys, "evaluate", "--checkpoint", ck, "--limit", "20", "--dataset", "mnist", "--quiet")
    assert code == 0 and json.loads(out)["count"] == 20


def test_a_final_evaluation_short_of_time_takes_the_splits_first_images_and_says_so(tmp_path, capsys, monkeypatch,
                                                                                  caplog):
    from draw_service.train import loop

    # the budget says a quarter of the split fits (its arithmetic is tests/unit/test_time_budget.py's)
    monkeypatch.setattr(loop.Budget, "final_share", lambda self, *args: 0.25)
    monkeypatch.setattr(loop.Budget, "spent", lambda self, meter, *args: meter.steps >= 4)
    code, out, _ = run_cli(capsys, "train", "--out", str(tmp_path / "run"), "--steps", "50", "--batch-size", "20",
                           "--train-limit", "400", "--test-limit", "400", "--eval-batch-size", "50",
                           "--time-limit", "60", *TINY)
    result = json.loads(out)
    assert code == 0 and result["step"] == 4 and result["eval_images"] == 100 and result["eval_split"] == "test"
    assert "the final evaluation took the first 100 of the 400 test images" in caplog.text
