"""W&B offline run files, grouped search trials, and the pictures that land in the output folder."""

import glob
from pathlib import Path

from wandb_records import config, history, run_info

from draw_service.cli import main
from draw_service.data.config import DataConfig
from draw_service.tracking import TrackingConfig
from draw_service.train.config import RayConfig, TrainConfig
from draw_service.tune.config import SearchConfig
from draw_service.tune.search import run_search

TINY = ["--T", "4", "--enc-size", "24", "--dec-size", "24", "--z-size", "6", "--read-n", "2", "--write-n", "3",
        "--batch-size", "20", "--train-limit", "400", "--test-limit", "60", "--quiet"]


def run_file(folder: Path) -> Path:
    found = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(found) == 1, found
    return Path(found[0])


def test_an_offline_run_records_metrics_pictures_and_config_but_never_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "local-0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "20", "--eval-every", "10", "--media-every", "20",
                 *TINY]) == 0
    path = run_file(out)
    rows = history(path)
    assert [r["_step"] for r in rows if "nll_bound" in r] == [10, 20]
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


def test_tracking_off_leaves_no_wandb_files(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "10", "--eval-every", "10", "--no-wandb", *TINY]) == 0
    assert not (out / "wandb").exists() and (out / "media").is_dir()


def test_a_search_groups_its_trials(ray_cluster, tmp_path, mnist):
    base = TrainConfig(data=DataConfig(dataset="mnist", train_limit=400, test_limit=40, validation_stride=10),
                       tracking=TrackingConfig(wandb=True), ray=RayConfig(num_workers=1, max_failures=1),
                       out=str(tmp_path / "grouped"), batch_size=20, steps=10, eval_every=10, quiet=True)
    point = {"read_n": 2, "write_n": 3, "z_size": 4, "hidden": 16, "T": 3, "lr": 3e-3}
    cfg = SearchConfig(base=base, space="smoke", trials=2, max_concurrent=2,
                       points_to_evaluate=[point, {**point, "lr": 1e-3}], algorithm="random")
    best = run_search(cfg)
    files = sorted(glob.glob(str(tmp_path / "grouped" / "trials" / "*" / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(files) == 2
    infos = [run_info(Path(f)) for f in files]
    assert {i.run_group for i in infos} == {"grouped"}
    assert {i.display_name for i in infos} == {Path(f).parents[2].name for f in files}  # one run per trial
    assert best["trial_id"] in {i.display_name for i in infos}
