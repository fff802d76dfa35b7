"""The Ray overhead: a 1-worker Ray Train run against the plain local loop at the same configuration, the
share of step time spent waiting for data from S3 (a local SeaweedFS), and reading a worker's shards
directly against Ray Data."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from .common import BATCH, PAPER, say


def bench_checkpoint_stall(cfg, mode: str, steps: int) -> dict[str, Any]:
    """How long each checkpoint to S3 holds a 1-worker run's training up (the report's wall time, rank 0),
    with Ray's upload in the report (`sync`) or on its own thread (`async`), a checkpoint every 4 steps."""
    import statistics

    from draw_service import checkpoint, storage
    from draw_service.train.config import RayConfig
    from draw_service.train.on_ray import fit

    out = f"s3://bench/runs/stall-{mode}"
    say(f"  checkpoint stall, {mode} upload, {steps} steps")
    t = time.perf_counter()
    final = fit(cfg.replace(out=out, checkpoint_every=4, keep_checkpoints=100, ray=RayConfig(
        num_workers=1, cpus_per_worker=os.cpu_count(), max_failures=0, checkpoint_upload=mode)))
    wall = time.perf_counter() - t
    stalls = [json.loads(storage.read_bytes(f"{out}/metrics/{name}")).get("last_checkpoint_s")
              for name in storage.list_dir(f"{out}/metrics")]
    stalls = [s for s in stalls if s is not None]
    size = len(storage.read_bytes(checkpoint.checkpoint_file(final["latest_checkpoint"])))
    return {"checkpoint_mb": round(size / 2**20, 1), "checkpoints": len(stalls) + 1,
            "stall_s_median": round(statistics.median(stalls), 3), "stall_s_max": round(max(stalls), 3),
            "images_per_s": round(final["images_per_s"], 1), "run_wall_s": round(wall, 1)}


def bench_ray(steps: int) -> dict[str, Any]:
    import ray

    from devtools.s3_server import SeaweedS3
    from draw_service.data import shards
    from draw_service.data.config import DataConfig
    from draw_service.data.worker import load_worker_data
    from draw_service.model import DRAWConfig
    from draw_service.storage import resolve
    from draw_service.tracking import TrackingConfig
    from draw_service.train.config import RayConfig, TrainConfig
    from draw_service.train.loop import train_loop
    from draw_service.train.on_ray import fit
    from draw_service.train.session import LocalSession

    result: dict[str, Any] = {}
    with SeaweedS3(bucket="bench") as s3, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(s3.env)
        say("  preparing MNIST into the local S3 server")
        shards.prepare_source("mnist", "s3://bench/mnist", progress=False)
        cfg = TrainConfig(model=DRAWConfig(**PAPER), data=DataConfig(dataset="s3://bench/mnist", test_limit=100),
                          tracking=TrackingConfig(wandb=False), batch_size=BATCH, steps=steps, eval_every=steps,
                          quiet=True)
        # A worker's training images from S3: its own shards read directly, or streamed by Ray Data
        # (one worker reading the whole training split, so both paths move the same bytes).
        t = time.perf_counter()
        part = load_worker_data(DataConfig(dataset="s3://bench/mnist"), 0, 1)
        direct = time.perf_counter() - t
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        loc = resolve("s3://bench/mnist/train")
        t = time.perf_counter()
        ds = ray.data.read_parquet(loc.path, filesystem=loc.fs).select_columns(["image", "index"])
        n = sum(len(b["index"]) for b in ds.iter_batches(batch_size=5000, batch_format="numpy"))
        via_ray_data = time.perf_counter() - t
        result["worker_data_read"] = {
            "images": len(part.train), "per_rank_shards_s": round(direct, 2),
            "ray_data_s": round(via_ray_data, 2), "ray_data_images": n,
            "kept": "per-rank shards" if direct <= via_ray_data else "ray data"}
        say(f"  worker data read: {result['worker_data_read']}")

        say(f"  local loop, {steps} steps")
        local = train_loop(cfg, LocalSession(os.path.join(tmp, "local"), "cpu", keep=1))
        say(f"  Ray Train, 1 worker, {steps} steps")
        t = time.perf_counter()
        # One worker given every core, as the local loop has (Ray sets a worker's threads to its CPUs).
        remote = fit(cfg.replace(out="s3://bench/runs/overhead",
                                 ray=RayConfig(num_workers=1, cpus_per_worker=os.cpu_count(), max_failures=0)))
        wall = time.perf_counter() - t
        result["checkpoint_stall"] = {mode: bench_checkpoint_stall(cfg, mode, steps) for mode in ("sync", "async")}
        say(f"  checkpoint stall: {result['checkpoint_stall']}")
        ray.shutdown()
    result.update({
        "config": {**PAPER, "batch_size": BATCH, "steps": steps},
        "local_images_per_s": round(local["images_per_s"], 1),
        "ray_1_worker_images_per_s": round(remote["images_per_s"], 1),
        "ray_overhead_ratio": round(local["images_per_s"] / remote["images_per_s"], 3),
        "ray_run_wall_s": round(wall, 1),
        "data_wait_share_s3": round(remote["data_wait_share"], 4),
        "data_load_from_s3_s": round(remote["data_load_s"], 2),
    })
    return result


