"""W&B offline run files, resumed runs, and the pictures that land in the output folder (a search's grouped
trials and their W&B files in storage: test_tune.py)."""

import glob
from pathlib import Path

from tiny import tiny_argv
from wandb_records import config, history, run_info

from draw_service.cli import main

TINY = [*tiny_argv(read_n=2, write_n=3), "--batch-size", "20", "--train-limit", "400", "--test-limit", "60", "--quiet"]


def run_file(folder: Path) -> Path:
    found = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(found) == 1, found
    return Path(found[0])


def test_an_offline_run_records_metrics_pictures_and_config_but_never_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "local-0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "20", "--eval-every", "10", "--media-every", "20",
                 "--log-every", "5", *TINY]) == 0
    path = run_file(out)
    rows = history(path)
    assert [r["_step"] for r in rows if "nll_bound" in r] == [10, 20]
    # the training loss every 5 steps, not only at evaluations (sharing the evaluations' rows)
    assert [r["_step"] for r in rows if "train_loss_running" in r] == [5, 10, 15, 20]
    last = next(r for r in rows if r["_step"] == 20 and "nll_bound" in r)
    for key in ("train_loss", "train_recon", "train_kl", "nll_bound", "images_per_s", "lr", "grad_norm"):
        assert isinstance(last[key], float), key
    media = [r for r in rows if "samples/path" in r]
    assert [r["_step"] for r in media] == [20]
    run_dir = path.parent / "files"
    assert (run_dir / media[0]["samples/path"]).stat().st_size > 0
    assert media[0]["drawing/_type"] == "video-file" and (run_dir / media[0]["drawing/path"]).suffix == ".gif"
    cfg = config(path)
    assert cfg["model"]["T"] == 4 and cfg["batch_size"] == 20 and cfg["image_shape"] == [1, 28, 28]
    assert cfg["model"]["likelihood"] == "bernoulli"  # settled by the data: binarised MNIST
    info = run_info(path)
    assert info.project == "draw-service" and info.display_name == "run"
    # the same pictures, without W&B, in the output folder
    assert sorted(p.name for p in (out / "media").iterdir()) == ["drawing_0000020.gif", "samples_0000020.png"]
    # the key is never written anywhere
    for f in out.rglob("*"):
        if f.is_file():
            assert b"0123456789abcdef0123456789abcdef" not in f.read_bytes(), f


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path, monkeypatch):
    """Offline, W&B writes one folder per process; a resumed run's folder carries the same run id and goes
    on from the step where the first stopped, so `wandb sync` of both makes one run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    common = ["--out", str(out), "--eval-every", "10", *TINY]
    assert main(["train", "--steps", "10", *common]) == 0
    assert main(["train", "--steps", "20", "--resume", *common]) == 0
    files = sorted(glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(files) == 2
    first, second = (run_info(Path(f)) for f in files)
    assert first.run_id == second.run_id
    # Two runs started within one second get folders "<name>" and "<name>-1", which sort the other way round:
    # tell them apart by what they logged. The resumed one goes on from step 10 and repeats nothing.
    reported = sorted([r["_step"] for r in history(Path(f)) if "nll_bound" in r] for f in files)
    assert reported == [[10], [20]]


def test_tracking_off_leaves_no_wandb_files(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "10", "--eval-every", "10", "--no-wandb", *TINY]) == 0
    assert not (out / "wandb").exists() and (out / "media").is_dir()
