"""Which images to train on, and how to present them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    # A name (mnist, fashion_mnist, svhn, cifar10), a .npz file, an image folder, or the URI of a
    # dataset prepared into Parquet shards (`draw-service prepare`).
    dataset: str = "mnist"
    # None: the paper's choice, binarised MNIST (dynamic for training, fixed for test); else as given.
    binarize: bool | None = None
    image_size: tuple[int, int] | None = None  # (height, width) to resize an image folder to
    train_limit: int | None = None  # use only the first N training images (smoke runs, tests)
    test_limit: int | None = None  # evaluate on the first N images of the evaluation split
    # Hold out every k-th training image (index % k == 0) as a validation split and evaluate on it
    # instead of the test split: what a hyperparameter search must do. 0 evaluates on the test split.
    validation_stride: int = 0
