"""Typed configuration for a training run: model, data, tracking, Ray and optimisation, stored in every checkpoint.

The command line of `draw-service train` (and the base of `draw-service tune`) is generated from these
dataclasses (`settings.py`): a new option is one line here.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from ..data.config import DataConfig
from ..device import PRECISIONS
from ..model import DRAWConfig
from ..settings import Settings, option, section
from ..tracking import TrackingConfig


def worker_count(text: str) -> int | tuple[int, int]:
    """`--num-workers`: `N`, or `MIN-MAX` for an elastic run."""
    try:
        if "-" in text.strip()[1:]:
            low, high = text.split("-")
            return int(low), int(high)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers N or a range MIN-MAX such as 1-4, got "
                                         f"{text!r}") from None


def show_workers(value: int | tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}" if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class RayConfig(Settings):
    """How one training run uses Ray Train (for a search: each trial's run)."""

    component = "Ray"

    num_workers: int | tuple[int, int] = option(
        0, parse=worker_count, show=show_workers, metavar="N|MIN-MAX",
        help="Ray Train workers (DDP); 0 trains in this process without Ray. MIN-MAX is elastic: the run starts "
             "with what the cluster has (at least MIN), keeps training on fewer workers when a node goes and grows "
             "back to MAX when nodes return, each time from its last checkpoint")
    gpus_per_worker: float = option(0.0, min=0, help="GPUs per worker: > 0 trains on GPUs (NCCL), 0 on CPUs (gloo); "
                                                     "a fraction such as 0.25 packs several workers on one GPU")
    cpus_per_worker: float = option(1.0, above=0, help="CPUs per worker (a worker runs as many torch threads)")
    max_failures: int = option(3, min=0, help="worker failures to recover from (preemptions do not count)")
    max_preemptions: int | None = option(None, min=0, help="node preemptions (a drained spot node) to recover "
                                                           "from; default: any number")
    resize_check_s: float = option(60.0, above=0, metavar="SECONDS",
                                   help="elastic runs: how often a healthy run looks for nodes to grow onto")
    checkpoint_upload: str = option("sync", choices=("sync", "async"),
                                    help="sync: training waits for Ray to upload each checkpoint; async: it goes "
                                         "on while Ray uploads on a thread of its own (registered once whole), "
                                         "for large checkpoints or slow storage on nodes with CPU to spare")
    worker_resources: str | None = option(None, metavar="NAME=AMOUNT,...",
                                          help="custom Ray resources each worker needs besides CPUs and GPUs, "
                                               "e.g. a node pool's (spot=1): workers land only on nodes that "
                                               "have them, and an elastic run counts them to size itself")

    def check(self) -> None:
        if isinstance(self.num_workers, int):
            if self.num_workers < 0:
                raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        elif not 1 <= self.num_workers[0] <= self.num_workers[1]:
            raise ValueError(f"num_workers MIN-MAX needs 1 <= MIN <= MAX, got {show_workers(self.num_workers)}")
        self.extra_resources()

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    @property
    def min_workers(self) -> int:
        return self.num_workers[0] if isinstance(self.num_workers, tuple) else self.num_workers

    @property
    def max_workers(self) -> int:
        return self.num_workers[1] if isinstance(self.num_workers, tuple) else self.num_workers

    @property
    def elastic(self) -> bool:
        return self.min_workers != self.max_workers

    def world_sizes(self) -> range:
        """Every world size the run may train with."""
        return range(max(1, self.min_workers), self.max_workers + 1)

    def extra_resources(self) -> dict[str, float]:
        """`worker_resources` as Ray's dict. (Not node labels: Ray 2.60's elastic sizing counts every node's
        resources and ignores label selectors, so an elastic run would wait for workers it cannot place.)"""
        from ..ray_cluster import resource_pairs

        return resource_pairs(self.worker_resources, "worker_resources")


@dataclass(frozen=True)
class TrainConfig(Settings):
    component = "training"

    model: DRAWConfig = section(lambda: DRAWConfig(likelihood="auto"),
                                title="model (defaults: the paper's MNIST model with attention)")
    data: DataConfig = section(DataConfig, title="data")
    tracking: TrackingConfig = section(TrackingConfig, title="tracking")
    ray: RayConfig = section(RayConfig, title="Ray (RAY_ADDRESS picks a running cluster; otherwise a local one starts)")
    out: str = option("runs/draw", help="the run's folder, local or s3://...; on Ray, submitting the same --out "
                                        "again continues the run")
    resume: bool = option(False, help="local runs: continue from the latest checkpoint in --out")
    batch_size: int = option(100, min=1, help="global batch size, split over the workers (results do not depend on "
                                              "their number)")
    lr: float = option(1e-3, above=0, help="Adam's learning rate (the peak, with a schedule)")
    lr_scaling: str = option("none", choices=("none", "linear", "sqrt"),
                             help="scale the learning rate by batch-size/100 for large batches")
    lr_schedule: str = option("constant", choices=("constant", "cosine"),
                              help="constant, or cosine: decay to zero over the run's steps")
    warmup_steps: int = option(0, min=0, help="steps of linear learning-rate warm-up")
    lr_final: float = option(0.0, min=0, help="cosine: the fraction of the peak rate the schedule ends at")
    kl_warmup_steps: int = option(0, min=0, help="steps over which the KL term's weight in the training objective "
                                                 "rises linearly from 0 to 1 (pulls the attention model out of its "
                                                 "early collapsed posterior); losses and bounds are always reported "
                                                 "with the whole KL")
    grad_clip: float = option(10.0, min=0, help="max global gradient norm, 0 = off")
    steps: int | None = option(None, min=1, help="optimiser steps (overrides --epochs)")
    epochs: float = option(1.0, above=0, help="epochs when --steps is not given")
    time_limit: float | None = option(None, above=0, metavar="MINUTES",
                                      help="the whole run's minutes, wall clock from the start of training: data "
                                           "loading, evaluations and the final evaluation and checkpoint included "
                                           "(the final evaluation takes the split's first images when the whole "
                                           "split would not fit, and says so)")
    train_time_limit: float | None = option(None, above=0, metavar="MINUTES",
                                            help="stop after this many minutes of training steps alone, evaluations "
                                                 "not counted (how the quality benchmarks compare recipes)")
    eval_every: int | None = option(None, min=1, help="steps between evaluations (default: one epoch)")
    checkpoint_every: int | None = option(None, min=1, help="steps between checkpoints (default: each evaluation)")
    keep_checkpoints: int = option(3, min=1, help="checkpoints kept (the latest and the best evaluated always are)")
    eval_batch_size: int = option(500, min=1, help="images per evaluation batch")
    iw_samples: int = option(0, min=0, help="importance samples for a final IWAE bound (0: skip)")
    seed: int = option(0, min=0, help="seeds the weights, the batches and the posterior noise")
    device: str = option("auto", choices=("auto", "cpu", "cuda"), help="where a local run trains")
    precision: str = option("auto", choices=PRECISIONS,
                            help="bf16: matrix products in bf16 (autocast), weights, optimiser state, likelihood "
                                 "and KL in fp32; auto: bf16 where the hardware computes it natively (CPU flag "
                                 "avx512_bf16 or amx_bf16, or a GPU with bf16), fp32 elsewhere")
    compile: bool = option(False, help="torch.compile the drawing steps")
    compile_steps: int = option(8, min=1, metavar="K", help="with --compile: drawing steps per compiled graph (1 "
                                                            "compiles fastest)")
    cuda_graphs: bool = option(False, help="capture the whole training step as one CUDA graph (one GPU per worker; "
                                           "the fastest at small batches)")
    quiet: bool = option(False, help="no progress bar")

    def check(self) -> None:
        if self.lr_final > 1:
            raise ValueError(f"lr_final is a fraction of the peak rate: at most 1, not {self.lr_final}")
        if self.cuda_graphs and self.device == "cpu":
            raise ValueError("cuda_graphs needs a GPU: use device cuda (or auto on a GPU machine)")
        uneven = [n for n in self.ray.world_sizes() if self.batch_size % n]
        if uneven:
            # the global batch is the user's: it is split evenly over however many workers there are
            sizes = self.ray.world_sizes()
            raise ValueError(f"batch size {self.batch_size} does not split evenly over {uneven[0]} workers"
                             + (f" (--num-workers {show_workers(self.ray.num_workers)} may train with any of "
                                f"{sizes.start}..{sizes.stop - 1}: a batch size divisible by {math.lcm(*sizes)} splits "
                                f"over all)" if self.ray.elastic else ""))

    def with_preset(self, name: str) -> TrainConfig:
        """These settings with a preset's laid over them (`--preset`; options given beside it win)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: use {', '.join(PRESETS)}")
        _, changes = PRESETS[name]
        merged = self.to_dict()
        for key, value in changes.items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
        return TrainConfig.from_dict(merged)

    def with_absolute_paths(self) -> TrainConfig:
        """This run as Ray's workers and trials must see it: local paths absolute, as meant where they were given."""
        from .. import storage

        return self.replace(out=storage.absolute(self.out), data=self.data.with_absolute_paths())

    def effective_lr(self) -> float:
        ratio = self.batch_size / 100
        return {"none": self.lr, "linear": self.lr * ratio, "sqrt": self.lr * ratio**0.5}[self.lr_scaling]

    def kl_weight_at(self, step: int) -> float:
        """The KL term's weight in the objective of optimiser step `step` (0-based): a pure function of the
        step, like the learning rate, so a resumed run continues the warm-up exactly."""
        return 1.0 if step >= self.kl_warmup_steps else (step + 1) / self.kl_warmup_steps

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of optimiser step `step` (0-based) of `total_steps`: a pure function of the step,
        so a resumed run continues the schedule exactly."""
        peak = self.effective_lr()
        if step < self.warmup_steps:
            return peak * (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            progress = min(1.0, (step - self.warmup_steps) / max(1, total_steps - self.warmup_steps))
            return peak * (self.lr_final + (1 - self.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))
        return peak


# `draw-service train --preset NAME`: a starting point, each option of it overridable on the command line.
PRESETS: dict[str, tuple[str, dict]] = {
    "paper": ("the paper's MNIST model with attention (the defaults; hours on a CPU)", {}),
    "quick": ("a small attention model that draws digits in about 3 minutes on 2 CPU cores, evaluation included "
              "(the demo search's best shape)",
              {"model": {"read_n": 2, "write_n": 5, "z_size": 10, "enc_size": 128, "dec_size": 128, "T": 10},
               "lr": 4e-3, "batch_size": 64, "epochs": 3.0, "time_limit": 2.8}),
}
