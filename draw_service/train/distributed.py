"""Training on Ray: the same loop on every worker, launched by `ray.train.torch.TorchTrainer`.

DDP over the workers (NCCL on GPUs, gloo on CPUs), checkpoints persisted by Ray into the run's
storage (`<storage>/<name>/checkpoint_<step>`), and `FailureConfig(max_failures)` restarting the
worker group from the latest checkpoint when a worker dies. Submitting the same `name` against the
same storage again continues that run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from .. import storage
from .config import TrainConfig

log = logging.getLogger(__name__)

# Settings a worker needs that are not secrets; credentials reach workers from the node's own
# environment (the driver's on a local cluster, a Secret or instance profile on a real one).
FORWARDED_ENV = ("DRAW_DATA_ROOT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "WANDB_MODE", "WANDB_DIR")


def ray_worker(config: dict[str, Any]) -> dict[str, Any]:
    """What each Ray Train worker runs: the training loop, with Ray as its session."""
    from .loop import train_loop
    from .session import RaySession

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return train_loop(config, RaySession(config["out"]))


@dataclass
class RayRun:
    num_workers: int = 2
    use_gpu: bool = False
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0
    storage: str = "runs"  # where Ray persists the run: local folder or s3://bucket/prefix
    name: str = "draw"  # stable: re-submitting the same name continues the run
    max_failures: int = 3


def init_ray(num_cpus: int | None = None) -> None:
    """Attach to the cluster in RAY_ADDRESS (`auto` finds one started on this machine), or start a local one."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(address="local", num_cpus=num_cpus)


def make_trainer(cfg: TrainConfig, run: RayRun, callbacks: list | None = None):
    """A TorchTrainer for `cfg`; `callbacks` lets Tune attach its report callback."""
    import ray.train
    from ray.train.torch import TorchTrainer

    loc = storage.check_access(run.storage)  # fail before any worker starts
    cfg.out = loc.join(run.name).uri  # pictures and W&B files live beside Ray's checkpoints
    resources = {"CPU": run.cpus_per_worker}
    if run.use_gpu:
        resources["GPU"] = run.gpus_per_worker
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    return TorchTrainer(
        ray_worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ray.train.ScalingConfig(num_workers=run.num_workers, use_gpu=run.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=run.name,
            storage_path=loc.path,
            storage_filesystem=loc.fs,
            failure_config=ray.train.FailureConfig(max_failures=run.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints,
                                                         checkpoint_score_attribute="nll_bound",
                                                         checkpoint_score_order="min"),
            worker_runtime_env={"env_vars": env} if env else None,
            callbacks=callbacks,
            # Ray Train's per-report INFO lines would bury the loop's own progress lines.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )


def checkpoint_uri(run: RayRun, ckpt) -> str:
    """A Ray checkpoint as a URI our loaders take (Ray hands back the path on its filesystem)."""
    loc = storage.resolve(run.storage)
    return f"s3://{ckpt.path}" if loc.is_s3 else ckpt.path


def preflight(cfg: TrainConfig, run: RayRun) -> None:
    """Errors a cluster should not spend GPU time discovering: storage, the dataset, a mismatched resume."""
    import dataclasses

    from .. import checkpoint
    from ..data import shards
    from .loop import check_resumable

    if cfg.cuda_graphs and (run.num_workers > 1 or not run.use_gpu):
        raise ValueError("cuda_graphs captures a one-GPU step: use --num-workers 1 with --gpus-per-worker 1, "
                         "or drop --cuda-graphs")
    run_loc = storage.check_access(run.storage)
    if shards.is_prepared(cfg.data.dataset):
        manifest = shards.read_manifest(cfg.data.dataset)
        data_loc = storage.resolve(cfg.data.dataset)
        for split in manifest["splits"].values():
            for shard in split["shards"]:
                if not storage.exists(data_loc.join(shard["path"])):
                    raise shards.DatasetError(f"shard {data_loc.join(shard['path']).uri} listed in the manifest "
                                              f"is missing; re-run `draw-service prepare`")
        C, H, W = manifest["image_shape"]
        latest = checkpoint.latest(run_loc.join(run.name))
        if latest:
            state = checkpoint.load(latest)
            check_resumable(state, dataclasses.replace(cfg.model, channels=C, height=H, width=W), cfg.data.dataset)
    elif cfg.data.dataset.startswith("s3://"):
        shards.read_manifest(cfg.data.dataset)  # raises: an S3 dataset must be prepared


def fit(cfg: TrainConfig, run: RayRun) -> dict[str, Any]:
    """Train on Ray and return the final metrics with the best and latest checkpoint URIs."""
    preflight(cfg, run)
    init_ray()
    result = make_trainer(cfg, run).fit()
    best = result.get_best_checkpoint(metric="nll_bound", mode="min") if result.best_checkpoints else None
    summary = dict(result.metrics or {})
    summary.update({
        "run": storage.resolve(run.storage).join(run.name).uri,
        "best_checkpoint": checkpoint_uri(run, best) if best else None,
        "latest_checkpoint": checkpoint_uri(run, result.checkpoint) if result.checkpoint else None,
    })
    return summary
