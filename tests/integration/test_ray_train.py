"""Distributed training on a real local Ray cluster, with checkpoints in a real S3 server."""

import json
import os
import signal
import threading

import pytest
from ray_runs import checkpoints_in, registered_step, wait_for
from tiny import tiny

from draw_service import storage
from draw_service.data.config import DataConfig
from draw_service.model import DRAWConfig
from draw_service.tracking import TrackingConfig
from draw_service.train.config import RayConfig, TrainConfig
from draw_service.train.on_ray import fit

MODEL = tiny(enc_size=32, dec_size=32, read_n=2, write_n=3, likelihood="auto")


def config(dataset, steps, out, workers=2, max_failures=3, **kw):
    return TrainConfig(model=MODEL, data=DataConfig(dataset=dataset), tracking=TrackingConfig(wandb=False),
                       ray=RayConfig(num_workers=workers, max_failures=max_failures), out=out, batch_size=40,
                       steps=steps, quiet=True, **kw)


def test_two_workers_train_on_s3_and_a_resubmission_continues(ray_cluster, mnist_s3, tmp_path):
    run = "s3://draw/runs/two-workers"
    result = fit(config(mnist_s3, 20, run, eval_every=10))
    assert result["step"] == 20 and result["resumed_from"] == 0
    assert result["best_checkpoint"].startswith("s3://draw/runs/two-workers/checkpoint_")
    assert checkpoints_in("runs/two-workers/") == ["checkpoint_0000010", "checkpoint_0000020"]
    objects = storage.boto3_client().list_objects_v2(Bucket="draw", Prefix="runs/two-workers/checkpoint_0000020/")
    assert [o["Key"].rsplit("/", 1)[1] for o in objects["Contents"] if not o["Key"].endswith("/")] == ["checkpoint.pt"]

    # The same run on a local folder store, same seed: the same losses.
    local = fit(config(mnist_s3, 20, str(tmp_path / "two-workers"), eval_every=10))
    for key in ("train_loss", "nll_bound", "train_kl"):
        assert local[key] == pytest.approx(result[key], rel=1e-6), key

    # Submitting the same run again with more steps continues it from its last checkpoint.
    more = fit(config(mnist_s3, 30, run, eval_every=10))
    assert more["step"] == 30 and more["resumed_from"] == 20


def test_a_killed_worker_costs_only_the_steps_since_the_last_checkpoint(ray_cluster, mnist_s3):
    from ray.util.state import list_actors

    cfg = config(mnist_s3, 160, "s3://draw/runs/fault", max_failures=2, eval_every=20, keep_checkpoints=100).replace(
        model=DRAWConfig(T=8, enc_size=64, dec_size=64, z_size=8, read_n=2, write_n=3, likelihood="auto"))
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=fit(cfg)))
    thread.start()
    # Ray registers a reported checkpoint asynchronously
    wait_for(lambda: registered_step("draw/runs/fault") >= 40, 240, "a checkpoint at step 40", alive=thread.is_alive)
    workers = [a for a in list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])]
    assert len(workers) == 2, f"the run is not mid-way with both workers alive: {workers}"
    os.kill(workers[1]["pid"], signal.SIGKILL)
    killed_at = registered_step("draw/runs/fault")
    thread.join(timeout=400)
    assert not thread.is_alive()
    result = outcome["result"]
    assert result["step"] == 160
    resumed = result["resumed_from"]
    print(f"\nfault injection: SIGKILL to worker pid {workers[1]['pid']} with checkpoint step {killed_at} registered; "
          f"the run resumed from step {resumed} and finished at step {result['step']}")
    assert 40 <= resumed < 160 and resumed % 20 == 0, result  # restarted from a checkpoint, not from scratch
    assert killed_at <= resumed <= killed_at + 20
    # every checkpoint, before and after the failure, is still there
    assert checkpoints_in("runs/fault/") == [f"checkpoint_{s:07d}" for s in range(20, 161, 20)]


def test_bad_storage_and_mismatched_data_fail_before_any_worker_starts(ray_cluster, mnist_s3, s3, tmp_path):
    from draw_service.data import shards
    from draw_service.data.sources import DatasetError, load_source
    from draw_service.train.run import train_command

    with pytest.raises(storage.StorageError, match="bucket 'missing-bucket'"):
        fit(config(mnist_s3, 5, "s3://missing-bucket/runs/x"))
    saved = os.environ["AWS_ACCESS_KEY_ID"]
    os.environ["AWS_ACCESS_KEY_ID"] = "nobody"
    try:
        with pytest.raises(storage.StorageError, match="refused"):
            fit(config(mnist_s3, 5, "s3://draw/runs/x"))
    finally:
        os.environ["AWS_ACCESS_KEY_ID"] = saved

    # A run trained on 28×28 MNIST resubmitted on 32×32 RGB images is refused with both shapes named.
    cifar = load_source("cifar10")
    cifar.train, cifar.test = cifar.train[:200], cifar.test[:50]
    cifar.train_labels, cifar.test_labels = cifar.train_labels[:200], cifar.test_labels[:50]
    shards.prepare(cifar, str(tmp_path / "cifar"), progress=False)
    run = str(tmp_path / "runs" / "shape")
    train_command(config(mnist_s3, 2, run, workers=0, eval_every=2))  # a local run: the same folder and checkpoint
    with pytest.raises(ValueError, match=r"\(3, 32, 32\).*checkpoint draws \(1, 28, 28\)"):
        fit(config(str(tmp_path / "cifar"), 4, run, workers=1))

    storage.delete(f"{tmp_path}/cifar/train/part-00000.parquet")
    with pytest.raises(DatasetError, match="part-00000.parquet listed in the manifest is missing"):
        fit(config(str(tmp_path / "cifar"), 4, str(tmp_path / "runs" / "y"), workers=1))


def test_a_local_run_continues_on_ray_and_keeps_its_best_checkpoints(ray_cluster, mnist_s3):
    """One run layout: a local run's folder on S3, continued by a Ray run with checkpoints between
    evaluations (which Ray's retention used to keep in place of the evaluated ones)."""
    from draw_service.train.run import train_command

    out = "s3://draw/runs/local-then-ray"
    local = config(mnist_s3, 10, out, workers=0, eval_every=10)
    assert train_command(local)["step"] == 10
    cfg = config(mnist_s3, 40, out, workers=1, eval_every=10, checkpoint_every=5, keep_checkpoints=1)
    result = fit(cfg)
    assert result["resumed_from"] == 10 and result["step"] == 40
    bounds = {s: json.loads(storage.read_bytes(f"{out}/metrics/{s:07d}.json"))["nll_bound"] for s in (20, 30, 40)}
    best = min(bounds, key=bounds.get)
    # Ray prunes the checkpoints it wrote (in the background); the local run's own stays as it left it.
    expected = sorted({"checkpoint_0000010", f"checkpoint_{best:07d}", "checkpoint_0000040"})
    wait_for(lambda: checkpoints_in("runs/local-then-ray/") == expected, 120,
             f"Ray to prune the checkpoints to {expected} (bounds {bounds})", every=0.5)
    assert result["best_checkpoint"] == f"{out}/checkpoint_{best:07d}"


def test_a_corrupt_shard_on_ray_is_one_line_not_a_traceback(ray_cluster, s3, mnist, capsys):
    from draw_service.cli import main
    from draw_service.data import shards

    dest = "s3://draw/datasets/corrupt-for-ray"
    shards.prepare_source("mnist", dest, train_limit=400, test_limit=50, shard_size=200, progress=False)
    shard = f"{dest}/train/part-00001.parquet"
    data = bytearray(storage.read_bytes(shard))
    data[len(data) // 2] ^= 0xFF
    storage.write_bytes(shard, bytes(data))
    code = main(["train", "--dataset", dest, "--out", "s3://draw/runs/corrupt", "--num-workers", "1",
                 "--max-failures", "0", "--steps", "2", "--T", "2", "--enc-size", "8", "--dec-size", "8",
                 "--z-size", "2", "--no-wandb", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("draw-service train: error: shard ") and "is corrupt" in err[-1]
    assert not any("Traceback" in line for line in err)
