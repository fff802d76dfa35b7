"""The training loop: one function for a local run and for every Ray Train worker.

Read it top to bottom: data for this worker, model and optimiser (resumed when a checkpoint exists),
then steps; every `eval_every` steps the test NLL bound is measured across all workers and reported
with a checkpoint. Batches and posterior noise are pure functions of the step number, so a resumed
run continues exactly as the interrupted one would have.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from .. import checkpoint
from ..data.batches import BatchStream
from ..data.worker import load_worker_data
from ..model import DRAW
from ..tracking import Tracker
from ..viz import sample_pictures
from .config import TrainConfig
from .evaluate import bound_sums, bounds_from_sums
from .graphed import EagerStep, GraphedStep

log = logging.getLogger(__name__)


def _all_reduce_sums(sums: dict[str, float], device: torch.device) -> dict[str, float]:
    if not (dist.is_available() and dist.is_initialized()):
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def out_of_time(t_start: float, limit_s: float, step: int, world: int, device: torch.device) -> bool:
    """Whether the wall-clock budget is spent; every worker gets the same answer (checked every 10 steps
    when there are several, so they stop at the same step)."""
    if world == 1:
        return time.perf_counter() - t_start > limit_s
    if step % 10:
        return False
    flag = torch.tensor([float(time.perf_counter() - t_start > limit_s)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _step_generator(device: torch.device, seed: int, rank: int, step: int) -> torch.Generator:
    return torch.Generator(device).manual_seed((seed * 1_000_003 + rank) * 10_000_019 + step)


def check_resumable(state: dict[str, Any], model_cfg, dataset: str) -> None:
    """A run resumes only the model it was training, on images of the shape it was drawing."""
    saved = state["model_config"]
    shape = (saved["channels"], saved["height"], saved["width"])
    if shape != model_cfg.image_shape:
        raise ValueError(f"dataset {dataset} has images of shape {model_cfg.image_shape} (C, H, W) but the run's "
                         f"checkpoint draws {shape}: use the run's own dataset or another output location")
    if saved != model_cfg.to_dict():
        changed = {k: (saved.get(k), v) for k, v in model_cfg.to_dict().items() if saved.get(k) != v}
        raise ValueError(f"the run's checkpoint holds a different model (checkpoint vs now: {changed}); "
                         f"resume with the same model options or use another output location")


def train_loop(config: dict[str, Any], session) -> dict[str, Any]:
    """Train DRAW as `config` (a `TrainConfig` as a dict) says, reporting through `session`."""
    cfg = TrainConfig.from_dict(config)
    rank, world, device = session.rank, session.world_size, session.device
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} does not split evenly over {world} workers")
    rank0 = rank == 0

    # Data: this worker's share of each split.
    t_load = time.perf_counter()
    data = load_worker_data(cfg.data, rank, world)
    data_load_s = time.perf_counter() - t_load
    C, H, W = data.image_shape
    model_cfg = dataclasses.replace(cfg.model, channels=C, height=H, width=W)
    steps_per_epoch = data.train_total // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{data.name} has {data.train_total} training images, "
                         f"fewer than one batch of {cfg.batch_size}")
    total_steps = cfg.steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    eval_every = min(cfg.eval_every or steps_per_epoch, total_steps)
    ckpt_every = cfg.checkpoint_every or eval_every
    media_every = cfg.tracking.media_every or eval_every
    stream = BatchStream(data.train, cfg.batch_size // world, seed=cfg.seed * 1009 + rank, binarize=data.binarize)

    # Model and optimiser, from the checkpoint when there is one.
    torch.manual_seed(cfg.seed)
    model = DRAW(model_cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.effective_lr())
    step = 0
    state = session.restore()
    if state is not None:
        check_resumable(state, model_cfg, cfg.data.dataset)
        model.load_state_dict(state["model"])
        step = state["step"]
    resumed_from = step
    net = session.prepare(model)  # on the device; DDP-wrapped with several workers
    model = getattr(net, "module", net)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])  # after the move: it follows its parameters' device
    if cfg.compile:
        model.compile_step(cfg.compile_steps)  # the loop over blocks of steps stays in Python
    run_config = {**cfg.to_dict(), "model": model_cfg.to_dict(), "world_size": world}
    tracker = Tracker(cfg.tracking, run_config, cfg.out) if rank0 else None
    if rank0:
        log.info("%s: %d train / %d %s images %s, %d steps (%d per epoch), %d workers, %s, %.2fM parameters",
                 data.name, data.train_total, data.eval_total, data.eval_split, data.image_shape, total_steps,
                 steps_per_epoch, world, device, sum(p.numel() for p in model.parameters()) / 1e6)

    train_step = (GraphedStep if cfg.cuda_graphs else EagerStep)(net, optimizer, cfg.grad_clip, cfg.precision == "bf16")
    noise_shape = (model_cfg.T, cfg.batch_size // world, model_cfg.z_size)
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss, recon, kl, grad norm since the last report
    n_since, t_since, data_wait = 0, time.perf_counter(), 0.0
    metrics: dict[str, Any] = {}
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not (rank0 and cfg.progress), mininterval=1 if sys.stderr.isatty() else 30)
    net.train()
    t_start = time.perf_counter()
    while step < total_steps:
        t_data = time.perf_counter()
        x = stream.batch(step)
        # Only the host's work counts as waiting for data: the copy to a GPU queues behind the previous step.
        data_wait += time.perf_counter() - t_data
        x = x.to(device, non_blocking=True)
        eps = torch.randn(noise_shape, generator=_step_generator(device, cfg.seed, rank, step), device=device)
        totals += torch.stack(train_step(x, eps)).double()  # loss, recon, kl, grad norm
        step += 1
        n_since += 1
        bar.update(1)
        if rank0 and (step % 20 == 0 or step == total_steps):
            bar.set_postfix(loss=f"{totals[0].item() / n_since:.2f}")

        if cfg.time_limit_s and out_of_time(t_start, cfg.time_limit_s, step, world, device):
            total_steps = step  # the budget is spent: finish here, with a final evaluation and checkpoint
            bar.total = step
        last = step == total_steps
        if step % eval_every and step % ckpt_every and not last:
            continue
        # Report: train terms since the last report, the test bound over every worker's share, a checkpoint.
        elapsed = time.perf_counter() - t_since
        avg = (_all_reduce_sums(dict(zip(("loss", "recon", "kl", "grad_norm"), (totals / n_since).tolist())), device))
        metrics = {
            "step": step, "epoch": step / steps_per_epoch,
            "train_loss": avg["loss"] / world, "train_recon": avg["recon"] / world, "train_kl": avg["kl"] / world,
            "grad_norm": avg["grad_norm"] / world, "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": n_since * cfg.batch_size / elapsed, "data_wait_share": data_wait / elapsed,
            "data_load_s": data_load_s, "resumed_from": resumed_from,
        }
        if step % eval_every == 0 or last:
            sums = bound_sums(model, data.eval, cfg.eval_batch_size, iw_samples=cfg.iw_samples if last else 0,
                              seed=cfg.seed + rank, device=device)
            ev = bounds_from_sums(_all_reduce_sums(sums, device))
            # nll_bound is on the evaluation split: the test split, or the validation split in a search
            metrics.update({"nll_bound": ev["nll_bound"], "eval_recon": ev["recon"], "eval_kl": ev["kl"],
                            "eval_split": data.eval_split})
            if "iwae_bound" in ev:
                metrics[f"iwae_bound_k{cfg.iw_samples}"] = ev["iwae_bound"]
        if rank0:
            bar.write(f"step {step}/{total_steps}  " + "  ".join(
                f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)), file=sys.stderr)
            tracker.log(metrics, step)
            if step % media_every == 0 or last:
                grid, gif = sample_pictures(model, cfg.tracking.media_samples,
                                            generator=torch.Generator(device).manual_seed(cfg.seed))
                tracker.log_media(grid, gif, step)
        state = None
        if step % ckpt_every == 0 or last:
            state = checkpoint.build_state(model, optimizer, step, cfg.to_dict(), metrics)
        session.report(metrics, state if rank0 else None)
        totals.zero_()
        n_since, t_since, data_wait = 0, time.perf_counter(), 0.0
    bar.close()
    result = {**metrics, "checkpoint": session.last_checkpoint}
    if tracker is not None:
        tracker.summary({k: v for k, v in result.items() if v is not None})
        tracker.finish()
    return result
