"""Typed configuration for a training run: data, model and optimisation, stored in every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..data.config import DataConfig
from ..model import DRAWConfig
from ..tracking import TrackingConfig


@dataclass
class TrainConfig:
    model: DRAWConfig = field(default_factory=DRAWConfig)  # height, width, channels come from the data
    data: DataConfig = field(default_factory=DataConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    out: str = "runs/draw"  # output URI: local folder or s3://bucket/prefix
    batch_size: int = 100  # global: split over the workers, so results do not depend on their number
    lr: float = 1e-3
    lr_scaling: str = "none"  # large batches: "linear" or "sqrt" scale lr by batch_size / 100
    grad_clip: float = 10.0  # max global gradient norm (0 disables)
    steps: int | None = None  # total optimiser steps; if None, `epochs` decides
    epochs: float = 1.0
    time_limit_s: float | None = None  # stop (evaluate, checkpoint) once training has run this long
    eval_every: int | None = None  # steps between evaluations and reports; default once per epoch
    checkpoint_every: int | None = None  # steps between checkpoints; default: every evaluation
    keep_checkpoints: int = 3
    eval_batch_size: int = 500
    iw_samples: int = 0  # importance samples for the IWAE bound at the end (0: skip)
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    precision: str = "fp32"  # fp32 or bf16 (autocast; for GPUs)
    compile: bool = False  # torch.compile the drawing steps
    compile_steps: int = 8  # drawing steps per compiled graph: more run faster and take longer to compile
    cuda_graphs: bool = False  # capture the whole training step as one CUDA graph (one GPU)
    progress: bool = True

    def effective_lr(self) -> float:
        ratio = self.batch_size / 100
        return {"none": self.lr, "linear": self.lr * ratio, "sqrt": self.lr * ratio**0.5}[self.lr_scaling]

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lr_scaling not in ("none", "linear", "sqrt"):
            raise ValueError(f"lr_scaling must be none, linear or sqrt, got {self.lr_scaling!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.steps is None and self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.compile_steps < 1:
            raise ValueError(f"compile_steps must be >= 1, got {self.compile_steps}")
        if self.cuda_graphs and self.device == "cpu":
            raise ValueError("cuda_graphs needs a GPU: use device cuda (or auto on a GPU machine)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}")
        model = d.pop("model", {})
        data = d.pop("data", {})
        tracking = d.pop("tracking", {})
        if isinstance(data, dict) and isinstance(data.get("image_size"), list):
            data = {**data, "image_size": tuple(data["image_size"])}
        cfg = cls(
            model=model if isinstance(model, DRAWConfig) else DRAWConfig.from_dict(model),
            data=data if isinstance(data, DataConfig) else DataConfig(**data),
            tracking=tracking if isinstance(tracking, TrackingConfig) else TrackingConfig(**tracking),
            **d,
        )
        cfg.validate()
        return cfg
