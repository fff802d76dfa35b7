"""Which images to train on and how to present them; and what `draw-service prepare` writes."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import Settings, option, size_hw

DATASET_HELP = ("mnist, fashion_mnist, svhn, cifar10, a keras-style .npz file, an image folder, or the URI of a "
                "prepared dataset (a folder or s3://bucket/prefix)")


@dataclass(frozen=True)
class DataConfig(Settings):
    component = "data"

    dataset: str = option("mnist", help=DATASET_HELP)
    binarize: bool | None = option(None, help="binarise pixels (default: yes for mnist, as in the paper; no "
                                              "otherwise)")
    image_size: tuple[int, int] | None = option(None, parse=size_hw, metavar="HxW",
                                                help="resize an image folder's images to HxW")
    train_limit: int | None = option(None, min=1, help="use only the first N training images")
    test_limit: int | None = option(None, min=1, help="evaluate on the first N images of the evaluation split")
    validation_stride: int = option(0, min=0, help="hold out every k-th training image as a validation split and "
                                                   "evaluate on it instead of the test split, as a search must; "
                                                   "0 evaluates on the test split")

    def with_absolute_paths(self) -> DataConfig:
        """The same data for a process that runs elsewhere: a local dataset path made absolute; names stay (and
        a bare word that is no name is refused here, before a cluster is asked to load it)."""
        from .. import storage
        from .sources import NAMES, check_name, source_key

        check_name(self.dataset)
        if source_key(self.dataset) in NAMES:
            return self
        return self.replace(dataset=storage.absolute(self.dataset))


@dataclass(frozen=True)
class PrepareConfig(Settings):
    component = "prepare"

    dataset: str = option("mnist", help="the source: mnist, fashion_mnist, svhn, cifar10, a .npz file or an "
                                        "image folder")
    dest: str | None = option(None, required=True, help="where the shards go: a folder or s3://bucket/prefix")
    image_size: tuple[int, int] | None = option(None, parse=size_hw, metavar="HxW",
                                                help="resize an image folder's images to HxW")
    shard_size: int = option(5000, min=1, help="images per shard")
    train_limit: int | None = option(None, min=1, help="keep only the first N training images")
    test_limit: int | None = option(None, min=1, help="keep only the first N test images")
    force: bool = option(False, help="rewrite even when an intact copy is there")
    quiet: bool = option(False, help="no progress bar")
