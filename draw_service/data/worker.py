"""What one training worker holds: its part of the training images and of the test split."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .batches import binarize_fixed
from .config import DataConfig
from .sources import load_source

log = logging.getLogger(__name__)


@dataclass
class WorkerData:
    name: str
    image_shape: tuple[int, int, int]  # (C, H, W)
    binarize: bool
    train: np.ndarray  # (n, C, H, W) uint8: this worker's training images
    test: np.ndarray  # (m, C, H, W) uint8: this worker's test images, already binarised when `binarize`
    train_total: int  # training images over all workers
    test_total: int


def default_binarize(name: str) -> bool:
    return name == "mnist"


def load_worker_data(cfg: DataConfig, rank: int = 0, world_size: int = 1) -> WorkerData:
    """Worker `rank` of `world_size` gets every world_size-th image of each split.

    A prepared dataset (Parquet shards with a manifest) is read shard by shard, each worker reading
    only its own shards; any other source is loaded whole and sliced.
    """
    from . import shards

    if shards.is_prepared(cfg.dataset):
        return shards.load_worker_data(cfg, rank, world_size)
    arrays = load_source(cfg.dataset, image_size=cfg.image_size)
    binarize = default_binarize(arrays.name) if cfg.binarize is None else cfg.binarize
    train = arrays.train[: cfg.train_limit]
    test = arrays.test[: cfg.test_limit]
    if binarize:
        test = binarize_fixed(test)
    return WorkerData(arrays.name, arrays.image_shape, binarize, train[rank::world_size], test[rank::world_size],
                      len(train), len(test))
