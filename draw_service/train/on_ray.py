"""Training on Ray: the same loop on every worker, launched by `ray.train.torch.TorchTrainer`.

DDP over the workers (NCCL on GPUs, gloo on CPUs); Ray persists each reported checkpoint into the run's
folder (`<out>/checkpoint_<step>`, the layout of a local run) and restarts the worker group from the
latest one when a worker dies (`FailureConfig`). Submitting the same `--out` again continues the run.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from typing import Any

import torch

from .. import checkpoint, storage
from ..data.worker import check_dataset
from ..errors import user_error
from ..model import DRAW
from ..run_dir import RunDir
from .config import TrainConfig

log = logging.getLogger(__name__)

# Settings a worker needs that are not secrets; credentials reach workers from the node's own
# environment (the driver's on a local cluster, a Secret or instance profile on a real one).
KEEP_SCORE = "checkpoint_rank"  # reported with each checkpoint: nll_bound when evaluated, else +inf

FORWARDED_ENV = ("DRAW_DATA_ROOT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "WANDB_MODE", "WANDB_DIR")


class RaySession:
    """The loop's `Session` on one Ray Train worker (see `session.py`)."""

    def __init__(self, out: str, cuda_graphs: bool = False, gpu_fraction: float = 0.0, checkpoint_upload: str = "sync"):
        import ray
        import ray.train
        import ray.train.torch

        self.run_dir = RunDir(out)
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.node = ray.get_runtime_context().get_node_id()[:12]
        self.cuda_graphs, self.gpu_fraction, self.checkpoint_upload = cuda_graphs, gpu_fraction, checkpoint_upload
        self.last_checkpoint: str | None = None
        if self.device.type == "cuda" and 0 < gpu_fraction < 1:
            # Several workers (search trials) share this GPU: each keeps to its share of the memory.
            torch.cuda.set_per_process_memory_fraction(gpu_fraction, self.device)

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as folder:
                log.info("worker %d resuming from %s", self.rank, ckpt.path)
                return checkpoint.load(folder)
        # Ray has registered no checkpoint of this run (it was trained locally so far, or a worker died
        # before Ray registered the first one): continue from what is in the run's folder.
        found = checkpoint.load_latest(self.run_dir)
        if found is not None:
            log.info("worker %d resuming from %s (found in the run's folder)", self.rank, found[1])
            return found[0]
        return None

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        if self.cuda_graphs and self.world_size > 1:
            # A CUDA graph captures DDP's all-reduce only when DDP was built on a side stream.
            model = model.to(self.device)
            side = torch.cuda.Stream(self.device)
            with torch.cuda.stream(side):
                return torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index])
        return ray.train.torch.prepare_model(model)  # to the device, and DDP when there are several workers

    def preempted(self) -> bool:
        import ray.train

        return ray.train.get_preemption_info() is not None  # a barrier: every worker asks at the same step

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        import ray.train

        if self.rank != 0:
            ray.train.report(metrics)  # every worker reports, or the others would wait for rank 0 forever
            return
        self.run_dir.write_metrics(metrics)
        if state is None:
            ray.train.report(metrics)
            return
        name = RunDir.checkpoint_name(state["step"])
        # Ray ranks checkpoints by this for retention: the bound where one was measured, else the worst.
        ranked = {**metrics, KEEP_SCORE: metrics.get("nll_bound", math.inf)}
        # Ray removes the folder once it is uploaded: in the report (sync), or on a thread of its own (async),
        # registering the checkpoint once it is whole; a reader of the run's folder passes over an upload cut short.
        folder = tempfile.mkdtemp(prefix="draw-checkpoint-")
        checkpoint.save(state, folder)
        mode = ray.train.CheckpointUploadMode[self.checkpoint_upload.upper()]
        ray.train.report(ranked, checkpoint=ray.train.Checkpoint.from_directory(folder), checkpoint_dir_name=name,
                         checkpoint_upload_mode=mode, delete_local_checkpoint_after_upload=True)
        self.last_checkpoint = self.run_dir.loc.join(name).uri


def ray_worker(config: dict[str, Any]) -> dict[str, Any]:
    """What each Ray Train worker runs: the training loop, with Ray as its session. Ray hands the
    configuration over as a plain dict (`TrainConfig.to_dict`); it is read back here, once."""
    from .loop import train_loop

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig.from_dict(config)
    return train_loop(cfg, RaySession(cfg.out, cuda_graphs=cfg.cuda_graphs, gpu_fraction=cfg.ray.gpus_per_worker,
                                      checkpoint_upload=cfg.ray.checkpoint_upload))


def preflight(cfg: TrainConfig) -> RunDir:
    """Errors a cluster should not spend GPU time discovering: storage, the dataset, a mismatched resume.
    Returns the run's folder."""
    if cfg.cuda_graphs and not cfg.ray.use_gpu:
        raise ValueError("cuda_graphs captures a GPU step: give the workers GPUs (--gpus-per-worker 1), or drop "
                         "--cuda-graphs")
    run = RunDir(storage.check_access(cfg.out))
    dataset = check_dataset(cfg.data)  # a prepared dataset: its shape, and every shard there
    if dataset is not None:
        model_cfg = cfg.model.for_data(dataset.binarize)
        DRAW(model_cfg, dataset.image_shape)  # built as every worker will build it: patches must fit the images
        found = checkpoint.load_latest(run)
        if found:
            checkpoint.check_resumable(found[0], model_cfg, dataset.image_shape, cfg.data.dataset)
    return run


def make_trainer(cfg: TrainConfig, run: RunDir, callbacks: list | None = None):
    """A TorchTrainer for `cfg`, whose folder is `run`; `callbacks` lets Tune attach its report callback."""
    import ray.train
    from ray.train.torch import TorchTrainer

    storage_path, filesystem, name = run.ray_storage()
    resources = {"CPU": cfg.ray.cpus_per_worker, **({"GPU": cfg.ray.gpus_per_worker} if cfg.ray.use_gpu else {}),
                 **cfg.ray.extra_resources()}
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if cfg.cuda_graphs and cfg.ray.max_workers > 1:
        env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "0"  # a graph cannot capture NCCL's watchdog; set before init
    # 1. Scale: `num_workers` copies of the loop, one DDP group (MIN-MAX: elastic, as many as the cluster has).
    scaling = ray.train.ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu,
                                      resources_per_worker=resources,
                                      elastic_resize_monitor_interval_s=cfg.ray.resize_check_s)
    # 2. Where the run lives (its checkpoints land in `<out>/checkpoint_<step>`), and how it survives failures.
    run_config = ray.train.RunConfig(
        name=name, storage_path=storage_path, storage_filesystem=filesystem,
        # A preempted node (drained by a spot provider or the autoscaler) is counted apart from failures.
        failure_config=ray.train.FailureConfig(
            max_failures=cfg.ray.max_failures,
            max_preemption_failures=-1 if cfg.ray.max_preemptions is None else cfg.ray.max_preemptions),
        # Keeps the `keep_checkpoints` best evaluated and the latest, as a local run does (checkpoint.retained).
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints,
                                                     checkpoint_score_attribute=KEEP_SCORE,
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
    import ray.train

    from ..ray_cluster import connect

    cfg = cfg.with_absolute_paths()
    run = preflight(cfg)
    connect()
    try:
        result = make_trainer(cfg, run).fit()
    except ray.train.TrainingFailedError as err:
        # the worker's own error about the run's inputs, out of Ray's wrapping: one line, as a local run says it
        raise next(filter(None, map(user_error, getattr(err, "worker_failures", {}).values())), err) from err
    evaluated = [(m["nll_bound"], c) for c, m in (result.best_checkpoints or []) if "nll_bound" in m]
    best = min(evaluated, key=lambda item: item[0])[1] if evaluated else None
    return {**(result.metrics or {}), "run": run.uri,
            "best_checkpoint": run.uri_of(best.path) if best else None,
            "latest_checkpoint": run.uri_of(result.checkpoint.path) if result.checkpoint else None}
