"""Training on Ray: the same loop on every worker, launched by `ray.train.torch.TorchTrainer`.

DDP over the workers (NCCL on GPUs, gloo on CPUs); Ray persists each reported checkpoint into the run's
folder (`<out>/checkpoint_<step>`, the layout of a local run) and restarts the worker group from the
latest one when a worker dies (`FailureConfig`). Submitting the same `--out` again continues the run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

import torch

from .. import checkpoint, storage
from ..data.worker import check_dataset
from ..model import DRAW
from ..run_dir import RunDir
from .config import TrainConfig

log = logging.getLogger(__name__)

# Settings a worker needs that are not secrets; credentials reach workers from the node's own
# environment (the driver's on a local cluster, a Secret or instance profile on a real one).
FORWARDED_ENV = ("DRAW_DATA_ROOT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "WANDB_MODE", "WANDB_DIR")


class RaySession:
    """The loop's session on one Ray Train worker (see `session.py`)."""

    def __init__(self, out: str):
        import ray.train
        import ray.train.torch

        self.run = RunDir(out)
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.last_checkpoint: str | None = None

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as folder:
                log.info("worker %d resuming from %s", self.rank, ckpt.path)
                return checkpoint.load(folder)
        # Ray has registered no checkpoint of this run (it was trained locally so far, or a worker died
        # before Ray registered the first one): continue from what is in the run's folder.
        latest = checkpoint.latest(self.run)
        if latest is not None:
            log.info("worker %d resuming from %s (found in the run's folder)", self.rank, latest)
            return checkpoint.load(latest)
        return None

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)  # to the device, and DDP when there are several workers

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        import ray.train

        if self.rank != 0:
            ray.train.report(metrics)  # every worker reports, or the others would wait for rank 0 forever
            return
        storage.write_bytes(self.run.metrics_file(int(metrics["step"])), json.dumps(metrics).encode())
        if state is None:
            ray.train.report(metrics)
            return
        name = RunDir.checkpoint_name(state["step"])
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint.save(state, tmp)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)
        self.last_checkpoint = self.run.loc.join(name).uri


def ray_worker(config: dict[str, Any]) -> dict[str, Any]:
    """What each Ray Train worker runs: the training loop, with Ray as its session."""
    from .loop import train_loop

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return train_loop(config, RaySession(config["out"]))


def preflight(cfg: TrainConfig) -> None:
    """Errors a cluster should not spend GPU time discovering: storage, the dataset, a mismatched resume."""
    if cfg.cuda_graphs and (cfg.ray.num_workers > 1 or not cfg.ray.use_gpu):
        raise ValueError("cuda_graphs captures a one-GPU step: use --num-workers 1 with --gpus-per-worker 1, "
                         "or drop --cuda-graphs")
    run = RunDir(storage.check_access(cfg.out))
    dataset = check_dataset(cfg.data)  # a prepared dataset: its shape, and every shard there
    if dataset is not None:
        model_cfg = cfg.model.for_data(dataset.binarize)
        DRAW(model_cfg, dataset.image_shape)  # built as every worker will build it: patches must fit the images
        latest = checkpoint.latest(run)
        if latest:
            checkpoint.check_resumable(checkpoint.load(latest), model_cfg, dataset.image_shape, cfg.data.dataset)


def make_trainer(cfg: TrainConfig, callbacks: list | None = None):
    """A TorchTrainer for `cfg`; `callbacks` lets Tune attach its report callback."""
    import ray.train
    from ray.train.torch import TorchTrainer

    run = RunDir(cfg.out)
    storage_path, filesystem, name = run.ray_storage()
    resources = {"CPU": cfg.ray.cpus_per_worker, **({"GPU": cfg.ray.gpus_per_worker} if cfg.ray.use_gpu else {})}
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    # 1. Scale: `num_workers` copies of the loop, one DDP group.
    scaling = ray.train.ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu,
                                      resources_per_worker=resources)
    # 2. Where the run lives (its checkpoints land in `<out>/checkpoint_<step>`), and how it survives failures.
    run_config = ray.train.RunConfig(
        name=name, storage_path=storage_path, storage_filesystem=filesystem,
        failure_config=ray.train.FailureConfig(max_failures=cfg.ray.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints,
                                                     checkpoint_score_attribute="nll_bound",
                                                     checkpoint_score_order="min"),
        worker_runtime_env={"env_vars": env} if env else None,
        callbacks=callbacks,
        # Ray Train's per-report INFO lines would bury the loop's own progress lines.
        logging_config=ray.train.LoggingConfig(log_level="WARNING"),
    )
    # 3. The trainer: the loop on every worker.
    return TorchTrainer(ray_worker, train_loop_config=cfg.to_dict(), scaling_config=scaling, run_config=run_config)


def fit(cfg: TrainConfig) -> dict[str, Any]:
    """Train on Ray and return the final metrics with the best and latest checkpoint URIs."""
    from ..ray_cluster import connect

    preflight(cfg)
    connect()
    result = make_trainer(cfg).fit()
    run = RunDir(cfg.out)
    evaluated = [(m["nll_bound"], c) for c, m in (result.best_checkpoints or []) if "nll_bound" in m]
    best = min(evaluated, key=lambda item: item[0])[1] if evaluated else None
    return {**(result.metrics or {}), "run": run.uri,
            "best_checkpoint": run.uri_of(best.path) if best else None,
            "latest_checkpoint": run.uri_of(result.checkpoint.path) if result.checkpoint else None}
