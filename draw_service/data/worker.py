"""What one training worker holds, from any dataset: the one entry point, `load_worker_data`.

A dataset is opened as a *reader*: `ShardReader` for a prepared dataset (Parquet shards plus a manifest,
each worker reading only its own shards) or `ArrayReader` for a source loaded whole into memory (a
dataset by name, a .npz file, an image folder). A reader hands out a worker's share of a split with
each image's index in it; this module makes that the worker's training images and its evaluation
images — the test split, or a validation split held out of the training images by index — binarised
as the data calls for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import storage
from .batches import binarize_fixed
from .config import DataConfig
from .shards import ShardReader, is_prepared
from .sources import ArrayReader, DatasetError, Part, load_source


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


def open_reader(spec: str, image_size: tuple[int, int] | None = None) -> ShardReader | ArrayReader:
    """A prepared dataset's shards, or any other source loaded into memory."""
    if spec.startswith("s3://"):
        storage.check_access(spec, write=False)  # a missing bucket or refused credentials, said as such
    if is_prepared(spec):
        return ShardReader(spec)
    if spec.startswith("s3://"):
        raise DatasetError(f"no prepared dataset at {spec}: there is no manifest.json under that prefix (mistyped, "
                           f"or not prepared yet: `draw-service prepare --dataset SOURCE --dest {spec}`)")
    return ArrayReader(load_source(spec, image_size=image_size))


def check_dataset(cfg: DataConfig) -> ShardReader | None:
    """What a driver can check before any worker starts: a prepared dataset's manifest and that every shard it
    lists is there (returned, for its image shape); None for a source the workers load themselves."""
    if cfg.dataset.startswith("s3://"):
        storage.check_access(cfg.dataset, write=False)
    if is_prepared(cfg.dataset):
        reader = ShardReader(cfg.dataset)
        reader.check_listing()
        if cfg.binarize is not None:
            reader.binarize = cfg.binarize
        return reader
    if cfg.dataset.startswith("s3://"):
        open_reader(cfg.dataset)  # raises: an S3 dataset must be prepared
    return None


def split_validation(part: Part, stride: int) -> tuple[Part, Part]:
    """(train, validation) of a worker's part: images whose index % stride == 0 are held out."""
    held = part.indices % stride == 0
    return (Part(part.images[~held], part.indices[~held], part.total),
            Part(part.images[held], part.indices[held], part.total))


def load_worker_data(cfg: DataConfig, rank: int = 0, world_size: int = 1) -> WorkerData:
    """Worker `rank` of `world_size`: its share of the training images and of the evaluation split."""
    reader = open_reader(cfg.dataset, cfg.image_size)
    binarize = reader.binarize if cfg.binarize is None else cfg.binarize
    train = reader.read("train", rank, world_size, cfg.train_limit)
    if cfg.validation_stride:
        k = cfg.validation_stride
        train, evals = split_validation(train, k)
        held = (train.total + k - 1) // k  # indices 0, k, 2k, ... below the split's size
        train_total, eval_total, split = train.total - held, held, "validation"
        if cfg.test_limit is not None:  # the first test_limit validation images, wherever they live
            keep = evals.indices < cfg.test_limit * k
            evals, eval_total = Part(evals.images[keep], evals.indices[keep], evals.total), min(held, cfg.test_limit)
    else:
        test = reader.read("test", 0, 1, cfg.test_limit)
        evals = Part(test.images[rank::world_size], test.indices[rank::world_size], test.total)
        train_total, eval_total, split = train.total, test.total, "test"
    eval_images = binarize_fixed(evals.images, evals.indices) if binarize else evals.images
    return WorkerData(reader.name, tuple(reader.image_shape), binarize, train.images, eval_images, split,
                      train_total, eval_total)
