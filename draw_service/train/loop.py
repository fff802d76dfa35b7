"""The training loop: one function for a local run and for every Ray Train worker.

Read it top to bottom: data for this worker, the model built for that data and its optimiser (resumed
when a checkpoint exists), then steps; every `eval_every` steps the bound on the evaluation split is
measured across all workers and reported with a checkpoint. Batches, posterior noise and the learning
rate are pure functions of the step number, so a resumed run continues exactly as the interrupted one
would have.
"""

from __future__ import annotations

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
from ..model.likelihood import bits_per_dim
from ..tracking import Tracker
from ..viz import sample_pictures
from .config import TrainConfig
from .evaluate import bound_sums, bounds_from_sums
from .step import EagerStep, GraphedStep

log = logging.getLogger(__name__)


def _all_reduce_sums(sums: dict[str, float], device: torch.device) -> dict[str, float]:
    if not (dist.is_available() and dist.is_initialized()):
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def out_of_time(used_s: float, limit_s: float, step: int, world: int, device: torch.device) -> bool:
    """Whether the training-time budget is spent; every worker gets the same answer (checked every 10
    steps when there are several, so they stop at the same step)."""
    if world == 1:
        return used_s > limit_s
    if step % 10:
        return False
    flag = torch.tensor([float(used_s > limit_s)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _step_generator(device: torch.device, seed: int, rank: int, step: int) -> torch.Generator:
    return torch.Generator(device).manual_seed((seed * 1_000_003 + rank) * 10_000_019 + step)


def train_loop(config: dict[str, Any], session) -> dict[str, Any]:
    """Train DRAW as `config` (a `TrainConfig` as a dict) says, reporting through `session`."""
    cfg = TrainConfig.from_dict(config)
    rank, world, device = session.rank, session.world_size, session.device
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} does not split evenly over {world} workers")
    rank0 = rank == 0

    # Data: this worker's share of each split. The data decides the image shape and the likelihood.
    t_load = time.perf_counter()
    data = load_worker_data(cfg.data, rank, world)
    data_load_s = time.perf_counter() - t_load
    model_cfg = cfg.model.for_data(data.binarize)
    dims = math.prod(data.image_shape)
    steps_per_epoch = data.train_total // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{data.name} has {data.train_total} training images, "
                         f"fewer than one batch of {cfg.batch_size}")
    planned_steps = cfg.steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))  # what the lr schedule spans
    total_steps = planned_steps
    eval_every = min(cfg.eval_every or steps_per_epoch, total_steps)
    ckpt_every = cfg.checkpoint_every or eval_every
    media_every = cfg.tracking.media_every or eval_every
    stream = BatchStream(data.train, cfg.batch_size // world, seed=cfg.seed * 1009 + rank, binarize=data.binarize)

    # Model and optimiser, from the checkpoint when there is one.
    torch.manual_seed(cfg.seed)
    model = DRAW(model_cfg, data.image_shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr_at(0, planned_steps))
    step, train_s, budget_s = 0, 0.0, 0.0  # training time: in all, and in this invocation (the time limit's)
    state = session.restore()
    if state is not None:
        if not state.get("optimizer"):
            raise checkpoint.CheckpointError("the run's checkpoint is weights-only (an export): training cannot "
                                             "continue from it; start a new run in another folder")
        checkpoint.check_resumable(state, model_cfg, model.image_shape, cfg.data.dataset)
        model.load_state_dict(state["model"])
        step = state["step"]
        train_s = 60 * float(state.get("metrics", {}).get("train_minutes", 0.0))
    resumed_from = step
    net = session.prepare(model)  # on the device; DDP-wrapped with several workers
    model = getattr(net, "module", net)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])  # after the move: it follows its parameters' device
    if cfg.compile:
        model.compile_step(cfg.compile_steps)  # the loop over blocks of steps stays in Python
    run_config = {**cfg.to_dict(), "model": model_cfg.to_dict(), "image_shape": list(data.image_shape),
                  "world_size": world}
    tracker = Tracker(cfg.tracking, run_config, session.run) if rank0 else None
    if rank0:
        log.info("%s: %d train / %d %s images %s, %d steps (%d per epoch), %d workers, %s, %.2fM parameters",
                 data.name, data.train_total, data.eval_total, data.eval_split, data.image_shape, total_steps,
                 steps_per_epoch, world, device, sum(p.numel() for p in model.parameters()) / 1e6)

    train_step = (GraphedStep if cfg.cuda_graphs else EagerStep)(net, optimizer, cfg.grad_clip, cfg.precision == "bf16")
    noise_shape = (model_cfg.T, cfg.batch_size // world, model_cfg.z_size)
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss, recon, kl, grad norm since the last report
    logged = torch.zeros(1, dtype=torch.float64, device=device)  # loss since the last training-loss log
    n_since, n_logged, t_since, data_wait = 0, 0, time.perf_counter(), 0.0
    metrics: dict[str, Any] = {}
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not rank0 or cfg.quiet, mininterval=1 if sys.stderr.isatty() else 30)
    net.train()
    t_step = time.perf_counter()
    while step < total_steps:
        t_data = time.perf_counter()
        x = stream.batch(step)
        # Only the host's work counts as waiting for data: the copy to a GPU queues behind the previous step.
        data_wait += time.perf_counter() - t_data
        x = x.to(device, non_blocking=True)
        eps = torch.randn(noise_shape, generator=_step_generator(device, cfg.seed, rank, step), device=device)
        train_step.set_lr(cfg.lr_at(step, planned_steps))
        train_step.set_kl_weight(cfg.kl_weight_at(step))
        terms = torch.stack(train_step(x, eps)).double()  # loss, recon, kl, grad norm
        totals += terms
        logged += terms[0]
        step += 1
        n_since += 1
        n_logged += 1
        bar.update(1)
        if cfg.time_limit and out_of_time(budget_s + time.perf_counter() - t_step, cfg.time_limit * 60, step, world,
                                          device):
            total_steps = step  # the budget is spent: finish here, with a final evaluation and checkpoint
            bar.total = step
        last = step == total_steps
        reporting = last or step % eval_every == 0 or step % ckpt_every == 0
        if rank0 and step % cfg.tracking.log_every == 0:
            loss = logged.item() / n_logged
            bar.set_postfix(loss=f"{loss:.2f}")
            # the report of this same step commits it, with its own values
            tracker.log({"train_loss_running": loss, "lr": train_step.lr}, step, commit=not reporting)
            logged.zero_()
            n_logged = 0
        if not reporting:
            continue
        # Report: train terms since the last report, the bound over every worker's share, a checkpoint.
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t_since
        train_s += time.perf_counter() - t_step  # training time only: evaluations and checkpoints excluded
        budget_s += time.perf_counter() - t_step
        avg = (_all_reduce_sums(dict(zip(("loss", "recon", "kl", "grad_norm"), (totals / n_since).tolist())), device))
        metrics = {
            "step": step, "epoch": step / steps_per_epoch, "train_minutes": train_s / 60,
            "train_loss": avg["loss"] / world, "train_recon": avg["recon"] / world, "train_kl": avg["kl"] / world,
            "grad_norm": avg["grad_norm"] / world, "lr": train_step.lr,
            "images_per_s": n_since * cfg.batch_size / elapsed, "data_wait_share": data_wait / elapsed,
            "data_load_s": data_load_s, "resumed_from": resumed_from,
        }
        if cfg.kl_warmup_steps:
            metrics["kl_weight"] = cfg.kl_weight_at(step - 1)  # the objective's, at the last step
        if step % eval_every == 0 or last:
            sums = bound_sums(model, data.eval, cfg.eval_batch_size, iw_samples=cfg.iw_samples if last else 0,
                              seed=cfg.seed + rank, device=device)
            ev = bounds_from_sums(_all_reduce_sums(sums, device))
            # nll_bound is on the evaluation split: the test split, or the validation split in a search
            metrics.update({"nll_bound": ev["nll_bound"], "bits_per_dim": bits_per_dim(ev["nll_bound"], dims),
                            "eval_recon": ev["recon"], "eval_kl": ev["kl"], "eval_split": data.eval_split})
            if "iwae_bound" in ev:
                metrics[f"iwae_bound_k{cfg.iw_samples}"] = ev["iwae_bound"]
                metrics[f"iwae_bits_per_dim_k{cfg.iw_samples}"] = bits_per_dim(ev["iwae_bound"], dims)
        if rank0:
            bar.write(f"step {step}/{total_steps}  " + "  ".join(
                f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)), file=sys.stderr)
            media = None
            if step % media_every == 0 or last:
                media = sample_pictures(model, cfg.tracking.media_samples,
                                        generator=torch.Generator(device).manual_seed(cfg.seed))
            tracker.log_report(metrics, step, media)
        state = None
        if step % ckpt_every == 0 or last:
            state = checkpoint.build_state(model, optimizer, step, cfg.to_dict(), metrics)
        session.report(metrics, state if rank0 else None)
        totals.zero_()
        n_since, t_since, data_wait = 0, time.perf_counter(), 0.0
        t_step = time.perf_counter()
    bar.close()
    result = {**metrics, "checkpoint": session.last_checkpoint}
    if tracker is not None:
        tracker.summary({k: v for k, v in result.items() if v is not None})
        tracker.finish()
    return result
