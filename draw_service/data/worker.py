"""What one training worker holds: its part of the training images and of the evaluation split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .batches import binarize_fixed
from .config import DataConfig
from .sources import load_source


@dataclass
class WorkerData:
    name: str
    image_shape: tuple[int, int, int]  # (C, H, W)
    binarize: bool
    train: np.ndarray  # (n, C, H, W) uint8: this worker's training images
    eval: np.ndarray  # (m, C, H, W) uint8: this worker's evaluation images, binarised once when `binarize`
    eval_split: str  # "test", or "validation" (held out of the training images)
    train_total: int  # training images over all workers
    eval_total: int


def default_binarize(name: str) -> bool:
    return name == "mnist"


def split_validation(images: np.ndarray, indices: np.ndarray, stride: int):
    """(train, validation) images and indices: index % stride == 0 is held out."""
    held = indices % stride == 0
    return images[~held], indices[~held], images[held], indices[held]


def assemble(name: str, shape, binarize: bool, train: np.ndarray, train_idx: np.ndarray, train_total: int,
             evals: np.ndarray, eval_idx: np.ndarray, eval_total: int, eval_split: str) -> WorkerData:
    if binarize:
        evals = binarize_fixed(evals, eval_idx)
    return WorkerData(name, tuple(shape), binarize, train, evals, eval_split, train_total, eval_total)


def load_worker_data(cfg: DataConfig, rank: int = 0, world_size: int = 1) -> WorkerData:
    """Worker `rank` of `world_size` gets its share of the training images and of the evaluation split.

    A prepared dataset (Parquet shards with a manifest) is read shard by shard, each worker reading
    only its own shards; any other source is loaded whole and sliced (every world_size-th image).
    """
    from . import shards

    if shards.is_prepared(cfg.dataset):
        return shards.load_worker_data(cfg, rank, world_size)
    arrays = load_source(cfg.dataset, image_size=cfg.image_size)
    binarize = default_binarize(arrays.name) if cfg.binarize is None else cfg.binarize
    train = arrays.train[: cfg.train_limit]
    idx = np.arange(len(train))
    if cfg.validation_stride:
        train, idx, evals, eval_idx = split_validation(train, idx, cfg.validation_stride)
        evals, eval_idx, split = evals[: cfg.test_limit], eval_idx[: cfg.test_limit], "validation"
    else:
        evals = arrays.test[: cfg.test_limit]
        eval_idx, split = np.arange(len(evals)), "test"
    return assemble(arrays.name, arrays.image_shape, binarize, train[rank::world_size], idx[rank::world_size],
                    len(train), evals[rank::world_size], eval_idx[rank::world_size], len(evals), split)
