"""The training loop: one function for a local run and for every Ray Train worker.

Read `train_loop` top to bottom: data for this worker, the model built for that data and its optimiser
(resumed when a checkpoint exists), then steps; every `eval_every` steps `report` measures the bound on
the evaluation split across all workers and hands metrics and a checkpoint to the session. Batches,
posterior noise and the learning rate are pure functions of the step number, so a resumed run continues
exactly as the interrupted one would have.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from .. import checkpoint
from ..data.batches import BatchStream
from ..data.worker import WorkerData, load_worker_data
from ..device import pick_precision
from ..model import DRAW
from ..model.likelihood import bits_per_dim
from ..tracking import Tracker
from ..viz import sample_pictures
from .config import TrainConfig
from .evaluate import bound_sums, bounds_from_sums
from .session import Session
from .step import EagerStep, GraphedStep

log = logging.getLogger(__name__)

TERMS = ("loss", "recon", "kl", "grad_norm")  # what a training step returns
PREEMPTION_CHECK_EVERY = 20  # steps between asking for a node preemption notice (a barrier over the workers)


def _all_reduce_sums(sums: dict[str, float], device: torch.device) -> dict[str, float]:
    if not (dist.is_available() and dist.is_initialized()):
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def agree(flag: bool, world: int, device: torch.device) -> bool:
    """Whether any worker says `flag` (every worker gets the same answer)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def agree_min(value: float, world: int, device: torch.device) -> float:
    """The smallest of every worker's `value`."""
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return float(t.item())


@dataclass
class Budget:
    """`--time-limit` (the whole run, wall clock) and `--train-time-limit` (training steps alone).

    The whole run's limit keeps back what the final report needs: the final evaluation (its cost measured at
    the last evaluation, or estimated from the training step's before the first), at most `FINAL_SHARE` of
    the limit; when the whole split costs more, the final evaluation takes the split's first images."""

    FINAL_SHARE = 0.25  # of --time-limit, at most, kept for the final evaluation
    MARGIN_S = 3.0  # pictures and the checkpoint, besides the evaluation

    limit_s: float | None  # the whole run
    train_limit_s: float | None  # training steps alone
    eval_images: int  # this worker's evaluation split
    started: float = field(default_factory=time.perf_counter)
    eval_s_per_image: float | None = None  # measured at the last evaluation

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    def full_eval_s(self, meter: Meter, local_batch: int, iw_samples: int) -> float:
        """What evaluating the whole split costs (forward passes only: about half a training step per image,
        until an evaluation has been timed)."""
        per_image = self.eval_s_per_image
        if per_image is None:
            trained = max(1, meter.steps) * local_batch
            per_image = 0.5 * (time.perf_counter() - meter.started) / trained
        return self.eval_images * (1 + iw_samples) * per_image

    def spent(self, meter: Meter, local_batch: int, iw_samples: int, evaluating_next: bool) -> bool:
        """Whether the run must end at this step: the training budget spent, or too little wall clock left for
        the final report (and, before a due evaluation, for that evaluation too)."""
        if self.train_limit_s is not None and meter.budget_used_s() > self.train_limit_s:
            return True
        if self.limit_s is None:
            return False
        full = self.full_eval_s(meter, local_batch, iw_samples)
        reserve = min(self.FINAL_SHARE * self.limit_s, full) + self.MARGIN_S
        return self.wall_s + reserve + (full if evaluating_next else 0.0) >= self.limit_s

    def final_share(self, meter: Meter, local_batch: int, iw_samples: int) -> float:
        """The share of the split the final evaluation can afford (1: all of it)."""
        if self.limit_s is None:
            return 1.0
        left = self.limit_s - self.wall_s - self.MARGIN_S
        return max(0.0, min(1.0, left / max(1e-9, self.full_eval_s(meter, local_batch, iw_samples))))

    def timed_eval(self, images: int, seconds: float, iw_samples: int) -> None:
        self.eval_s_per_image = seconds / max(1, images * (1 + iw_samples))


def _gather(value: str, world: int) -> list[str]:
    """Every worker's `value`, in rank order."""
    if world == 1:
        return [value]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, value)
    return out


def _step_generator(device: torch.device, seed: int, rank: int, step: int) -> torch.Generator:
    return torch.Generator(device).manual_seed((seed * 1_000_003 + rank) * 10_000_019 + step)


class Meter:
    """The running sums between reports: the step terms (kept on the device, so no step waits for them), the
    time spent training and waiting for data. Training time excludes reports (evaluation, pictures,
    checkpoints): `pause` at a report, `resume` after it."""

    def __init__(self, device: torch.device, train_s: float = 0.0):
        self.terms = torch.zeros(len(TERMS), dtype=torch.float64, device=device)  # since the last report
        self.loss_logged = torch.zeros((), dtype=torch.float64, device=device)  # since the last loss log
        self.steps = self.steps_logged = 0
        self.resumed_s = train_s  # the training time of the run before this invocation
        self.budget_s = 0.0  # this invocation's training time, which --time-limit bounds
        self.data_wait_s = 0.0
        self.since = self.started = time.perf_counter()

    def add(self, terms: torch.Tensor) -> None:
        self.terms += terms
        self.loss_logged += terms[0]
        self.steps += 1
        self.steps_logged += 1

    @property
    def train_s(self) -> float:
        """The run's training time up to the last report, resumed runs included."""
        return self.resumed_s + self.budget_s

    def budget_used_s(self) -> float:
        return self.budget_s + time.perf_counter() - self.started

    def running_loss(self) -> float:
        """The mean loss since the last call."""
        loss = self.loss_logged.item() / self.steps_logged
        self.loss_logged.zero_()
        self.steps_logged = 0
        return loss

    def pause(self) -> dict[str, float]:
        """At a report: the mean of each term and the throughput since the last one; the clock stops."""
        now = time.perf_counter()
        self.budget_s += now - self.started
        elapsed = now - self.since
        means = dict(zip(TERMS, (self.terms / self.steps).tolist()))
        return {**means, "steps": self.steps, "elapsed_s": elapsed, "data_wait_share": self.data_wait_s / elapsed}

    def resume(self) -> None:
        self.terms.zero_()
        self.steps, self.data_wait_s = 0, 0.0
        self.since = self.started = time.perf_counter()


@dataclass(frozen=True)
class Schedule:
    """How many steps the run takes, and which steps report what."""

    steps_per_epoch: int
    planned_steps: int  # what the learning-rate schedule spans (a time limit may end the run sooner)
    eval_every: int
    checkpoint_every: int
    media_every: int

    @classmethod
    def of(cls, cfg: TrainConfig, data: WorkerData) -> Schedule:
        steps_per_epoch = data.train_total // cfg.batch_size
        if steps_per_epoch < 1:
            raise ValueError(f"{data.name} has {data.train_total} training images, fewer than one batch of "
                             f"{cfg.batch_size}")
        planned = cfg.steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
        eval_every = min(cfg.eval_every or steps_per_epoch, planned)
        return cls(steps_per_epoch, planned, eval_every, cfg.checkpoint_every or eval_every,
                   cfg.tracking.media_every or eval_every)


def train_loop(cfg: TrainConfig, session: Session) -> dict[str, Any]:
    """Train DRAW as `cfg` says, reporting through `session`; returns the last report's metrics."""
    rank, world, device = session.rank, session.world_size, session.device
    started = time.perf_counter()  # --time-limit counts from here
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} does not split evenly over {world} workers")

    # Data: this worker's share of each split. The data decides the image shape and the likelihood.
    t_load = time.perf_counter()
    data = load_worker_data(cfg.data, rank, world)
    data_load_s = time.perf_counter() - t_load
    model_cfg = cfg.model.for_data(data.binarize)
    plan = Schedule.of(cfg, data)
    stream = BatchStream(data.train, cfg.batch_size // world, seed=cfg.seed * 1009 + rank, binarize=data.binarize)

    # Model and optimiser, from the checkpoint when there is one.
    torch.manual_seed(cfg.seed)
    model = DRAW(model_cfg, data.image_shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr_at(0, plan.planned_steps))
    step, train_s = 0, 0.0
    state = session.restore()
    if state is not None:
        if not state.get("optimizer"):
            raise checkpoint.CheckpointError("the run's checkpoint is weights-only (an export): training cannot "
                                             "continue from it; start a new run in another folder")
        checkpoint.check_resumable(state, model_cfg, model.image_shape, cfg.data.dataset)
        model.load_state_dict(state["model"])
        step = state["step"]
        train_s = 60 * float(state.get("metrics", {}).get("train_minutes", 0.0))
    net = session.prepare(model)  # on the device; DDP-wrapped with several workers
    model = getattr(net, "module", net)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])  # after the move: it follows its parameters' device
    if cfg.compile:
        model.compile_step(cfg.compile_steps)  # the loop over blocks of steps stays in Python
    precision, precision_why = pick_precision(cfg.precision, device)
    nodes = _gather(session.node, world)  # where each rank runs, for the log and every report
    tracker = None
    if rank == 0:
        tracker = Tracker(cfg.tracking, {**cfg.to_dict(), "model": model_cfg.to_dict(),
                                         "image_shape": list(data.image_shape), "world_size": world}, session.run_dir)
        log.info("%s: %d train / %d %s images %s, %d steps (%d per epoch), %d workers, %s, %.2fM parameters",
                 data.name, data.train_total, data.eval_total, data.eval_split, data.image_shape, plan.planned_steps,
                 plan.steps_per_epoch, world, device, sum(p.numel() for p in model.parameters()) / 1e6)
        log.info("precision %s (%s)", precision, precision_why)
        if world > 1:
            log.info("world size %d, from step %d: %s", world, step,
                     ", ".join(f"rank {r} on node {n}" for r, n in enumerate(nodes)))

    # Steps.
    train_step = (GraphedStep if cfg.cuda_graphs else EagerStep)(net, optimizer, cfg.grad_clip, precision == "bf16")
    noise_shape = (model_cfg.T, cfg.batch_size // world, model_cfg.z_size)
    meter = Meter(device, train_s)
    budget = Budget(cfg.time_limit and cfg.time_limit * 60, cfg.train_time_limit and cfg.train_time_limit * 60,
                    len(data.eval), started)
    total_steps = plan.planned_steps
    metrics: dict[str, Any] = {}
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=rank != 0 or cfg.quiet, mininterval=1 if sys.stderr.isatty() else 30)
    reporter = Reporter(cfg, plan, model, optimizer, data, session, tracker, bar,
                        {"data_load_s": data_load_s, "resumed_from": step, "world_size": world,
                         "worker_nodes": ",".join(nodes),
                         "precision": precision}, budget)
    noticed = False  # a node preemption notice, answered with a checkpoint
    net.train()
    while step < total_steps:
        t_data = time.perf_counter()
        x = stream.batch(step)
        # Only the host's work counts as waiting for data: the copy to a GPU queues behind the previous step.
        meter.data_wait_s += time.perf_counter() - t_data
        x = x.to(device, non_blocking=True)
        eps = torch.randn(noise_shape, generator=_step_generator(device, cfg.seed, rank, step), device=device)
        train_step.set_lr(cfg.lr_at(step, plan.planned_steps))
        train_step.set_kl_weight(cfg.kl_weight_at(step))
        meter.add(torch.stack(train_step(x, eps)).double())
        step += 1
        bar.update(1)
        if cfg.time_limit or cfg.train_time_limit:
            evaluating = step % plan.eval_every == 0
            # several workers compare notes every 10 steps, and before each evaluation, so they stop together
            if (world == 1 or step % 10 == 0 or evaluating) and agree(
                    budget.spent(meter, noise_shape[1], cfg.iw_samples, evaluating), world, device):
                total_steps = bar.total = step  # the time is spent: finish here, with a final report
        last = step == total_steps
        # A spot node about to go: checkpoint now, keep training; Ray restarts the run from it once it is gone.
        notice = not noticed and step % PREEMPTION_CHECK_EVERY == 0 and session.preempted()
        if notice:
            noticed = True
            if rank == 0:
                log.warning("step %d: a node of this run is being preempted: checkpointing now", step)
        reporting = last or notice or step % plan.eval_every == 0 or step % plan.checkpoint_every == 0
        if tracker is not None and step % cfg.tracking.log_every == 0:
            loss = meter.running_loss()
            bar.set_postfix(loss=f"{loss:.2f}")
            # the report of this same step commits it, with its own values
            tracker.log({"train_loss_running": loss, "lr": train_step.lr}, step, commit=not reporting)
        if reporting:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            share = agree_min(budget.final_share(meter, noise_shape[1], cfg.iw_samples), world, device) if last else 1.0
            since = meter.pause()
            metrics = reporter.report(step, last, since, train_step.lr, meter.train_s / 60, checkpoint_now=notice,
                                      eval_share=share)
            meter.resume()
    bar.close()
    result = {**metrics, "checkpoint": session.last_checkpoint}
    if tracker is not None:
        tracker.summary({k: v for k, v in result.items() if v is not None})
        tracker.finish()
    return result


@dataclass
class Reporter:
    """Reports of one run: what they read that stays the same from one report to the next."""

    cfg: TrainConfig
    plan: Schedule
    model: DRAW
    optimizer: torch.optim.Optimizer
    data: WorkerData
    session: Session
    tracker: Tracker | None  # rank 0 only
    bar: tqdm
    constant: dict[str, Any]  # metrics every report repeats (data_load_s, resumed_from, world_size, worker_nodes)
    budget: Budget
    checkpoint_s: float | None = None  # the time the last checkpoint's save (and upload) took

    def report(self, step: int, last: bool, since: dict[str, float], lr: float, train_minutes: float,
               checkpoint_now: bool = False, eval_share: float = 1.0) -> dict[str, Any]:
        """One report: the training terms since the last one (averaged over the workers), the bound on the
        evaluation split (or its first `eval_share`) when due, pictures when due, a checkpoint when due (or
        `checkpoint_now`); returns its metrics."""
        cfg, plan, session, device = self.cfg, self.plan, self.session, self.session.device
        world = session.world_size
        avg = _all_reduce_sums({k: since[k] for k in TERMS}, device)
        metrics: dict[str, Any] = {
            "step": step, "epoch": step / plan.steps_per_epoch, "train_minutes": train_minutes,
            "train_loss": avg["loss"] / world, "train_recon": avg["recon"] / world, "train_kl": avg["kl"] / world,
            "grad_norm": avg["grad_norm"] / world, "lr": lr,
            "images_per_s": since["steps"] * cfg.batch_size / since["elapsed_s"],
            "data_wait_share": since["data_wait_share"], **self.constant,
        }
        if cfg.kl_warmup_steps:
            metrics["kl_weight"] = cfg.kl_weight_at(step - 1)  # the objective's, at the last step
        if step % plan.eval_every == 0 or last:
            iw = cfg.iw_samples if last else 0
            images = self.data.eval
            if eval_share < 1:  # --time-limit leaves room for only the split's first images
                images = images[:max(min(len(images), cfg.eval_batch_size), math.floor(eval_share * len(images)))]
            started = time.perf_counter()
            sums = bound_sums(self.model, images, cfg.eval_batch_size, iw_samples=iw, seed=cfg.seed + session.rank,
                              device=device)
            self.budget.timed_eval(len(images), time.perf_counter() - started, iw)
            ev = bounds_from_sums(_all_reduce_sums(sums, device))
            if ev["count"] < self.data.eval_total:
                metrics["eval_images"] = int(ev["count"])
                if session.rank == 0:
                    log.warning("--time-limit: the final evaluation took the first %d of the %d %s images",
                                int(ev["count"]), self.data.eval_total, self.data.eval_split)
            dims = math.prod(self.data.image_shape)
            # nll_bound is on the evaluation split: the test split, or the validation split in a search
            metrics.update({"nll_bound": ev["nll_bound"], "bits_per_dim": bits_per_dim(ev["nll_bound"], dims),
                            "eval_recon": ev["recon"], "eval_kl": ev["kl"], "eval_split": self.data.eval_split})
            if "iwae_bound" in ev:
                metrics[f"iwae_bound_k{cfg.iw_samples}"] = ev["iwae_bound"]
                metrics[f"iwae_bits_per_dim_k{cfg.iw_samples}"] = bits_per_dim(ev["iwae_bound"], dims)
        if self.tracker is not None:
            self.bar.write(f"step {step}/{self.bar.total}  " + "  ".join(
                f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)), file=sys.stderr)
            media = None
            if step % plan.media_every == 0 or last:
                media = sample_pictures(self.model, cfg.tracking.media_samples,
                                        generator=torch.Generator(device).manual_seed(cfg.seed))
            self.tracker.log_report(metrics, step, media)
        if self.checkpoint_s is not None:
            metrics["last_checkpoint_s"] = self.checkpoint_s  # how long the previous checkpoint held training up
        state = None
        if step % plan.checkpoint_every == 0 or last or checkpoint_now:
            state = checkpoint.build_state(self.model, self.optimizer, step, cfg.to_dict(), metrics)
        started = time.perf_counter()
        session.report(metrics, state if session.rank == 0 else None)
        if state is not None:
            self.checkpoint_s = time.perf_counter() - started
        return metrics
