"""Image datasets as uint8 arrays: torchvision datasets by name, keras-style .npz files, image folders.

Every source becomes an `ImageArrays`: `(N, C, H, W)` uint8 images and int64 labels for a train and a
test split; `ArrayReader` hands them to training workers (`worker.py`) as `ShardReader` does a prepared
dataset. The dataset root comes from `DRAW_DATA_ROOT` (default: a per-user cache folder); torchvision
downloads into it where it can and reads what is already there where it cannot.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "DRAW_DATA_ROOT"
NAMES = ("mnist", "fashion_mnist", "svhn", "cifar10")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FOLDER_TEST_FRACTION = 0.1  # an image folder has no test split: a seeded 10% of its images is held out


class DatasetError(UserError):
    """A dataset cannot be found, downloaded or read; the message says what to do."""


def default_binarize(name: str) -> bool:
    """Whether a dataset is binarised unless told otherwise: MNIST, as in the paper's likelihoods."""
    return name == "mnist"


class Part(NamedTuple):
    """A worker's share of a split: images `(n, C, H, W)` uint8, their indices in the split, the split's size."""

    images: np.ndarray
    indices: np.ndarray
    total: int


@dataclass
class ImageArrays:
    name: str
    train: np.ndarray  # (N, C, H, W) uint8
    train_labels: np.ndarray  # (N,) int64
    test: np.ndarray  # (M, C, H, W) uint8
    test_labels: np.ndarray  # (M,) int64
    source: str  # where the pixels came from, for manifests and logs

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in ("train", "test"):
            raise DatasetError(f"unknown split {split!r}: use 'train' or 'test'")
        return (self.train, self.train_labels) if split == "train" else (self.test, self.test_labels)


class ArrayReader:
    """A source held in memory, read by workers: worker `rank` takes every `world`-th image."""

    def __init__(self, arrays: ImageArrays):
        self.arrays = arrays
        self.name, self.image_shape = arrays.name, arrays.image_shape
        self.binarize = default_binarize(arrays.name)

    def read(self, split: str, rank: int, world: int, limit: int | None) -> Part:
        images = self.arrays.split(split)[0][:limit]
        indices = np.arange(len(images))
        return Part(images[rank::world], indices[rank::world], len(images))


def data_root() -> Path:
    root = os.environ.get(DATA_ROOT_ENV)
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "draw-service" / "datasets"


def load_source(spec: str, root: str | Path | None = None, image_size: tuple[int, int] | None = None) -> ImageArrays:
    """A dataset by name (`mnist`, `fashion_mnist`, `svhn`, `cifar10`), `.npz` file or image folder."""
    root = Path(root) if root is not None else data_root()
    key = source_key(spec)
    if key in NAMES:
        return {"mnist": _mnist, "fashion_mnist": _mnist, "svhn": _svhn, "cifar10": _cifar10}[key](key, root)
    path = Path(spec).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise DatasetError(f"dataset file {path} does not exist")
        return load_npz(path)
    if path.is_dir():
        return load_folder(path, image_size)
    raise unknown_dataset(spec)


def source_key(spec: str) -> str:
    """A dataset name as NAMES spells it (`Fashion-MNIST` is `fashion_mnist`); other specs pass through."""
    return spec.lower().replace("-", "_")


def unknown_dataset(spec: str) -> DatasetError:
    close = difflib.get_close_matches(source_key(spec), NAMES, n=1)
    return DatasetError(
        f"unknown dataset {spec!r}{f' (did you mean {close[0]}?)' if close else ''}: use one of {', '.join(NAMES)}, "
        f"a keras-style .npz file (x_train, y_train, x_test, y_test), or a folder of images"
    )


def check_name(spec: str) -> None:
    """What a driver can tell of a dataset its workers will load: a bare word must be one of the names (a
    path may exist only on the workers' nodes, so paths are theirs to find)."""
    if source_key(spec) not in NAMES and "/" not in spec and not spec.endswith(".npz"):
        raise unknown_dataset(spec)


def _download_failed(what: str, root: Path, err: Exception, layout: str) -> DatasetError:
    return DatasetError(
        f"{what} is not under {root} and could not be downloaded ({type(err).__name__}: {err}). "
        f"Either give this machine internet access, or put the files in a folder as {layout} and set "
        f"{DATA_ROOT_ENV} to that folder (now {root})."
    )


def _mnist(key: str, root: Path) -> ImageArrays:
    from torchvision import datasets

    cls = datasets.MNIST if key == "mnist" else datasets.FashionMNIST
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as err:  # torchvision raises RuntimeError, URLError, OSError... on a failed download
            layout = f"{cls.__name__}/raw/*-ubyte, torchvision's layout"
            raise _download_failed(cls.__name__, root, err, layout) from err
        splits += [ds.data.numpy()[:, None], ds.targets.numpy().astype(np.int64)]
    return ImageArrays(key, *splits, source=f"torchvision.datasets.{cls.__name__}({root})")


def _cifar10(key: str, root: Path) -> ImageArrays:
    from torchvision import datasets

    if not (root / "cifar-10-batches-py").is_dir():
        # Machines without internet may hold a keras-style copy instead: the whole set, or all 50k training
        # images with part of the test set, or a 10k subset (CI's); the largest there is wins.
        for name in ("cifar10.npz", "cifar10-50k.npz", "cifar10-subset.npz"):
            if (root / name).is_file():
                log.info("CIFAR-10: using %s", root / name)
                arrays = load_npz(root / name)
                arrays.name = key
                return arrays
    splits = []
    for train in (True, False):
        try:
            ds = datasets.CIFAR10(str(root), train=train, download=True)
        except Exception as err:
            raise _download_failed("CIFAR-10", root, err, "cifar-10-batches-py/ or cifar10.npz") from err
        splits += [ds.data.transpose(0, 3, 1, 2).copy(), np.asarray(ds.targets, dtype=np.int64)]
    return ImageArrays(key, *splits, source=f"torchvision.datasets.CIFAR10({root})")


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN's format 2 `.mat`: X `(32, 32, 3, N)` uint8 and y `(N, 1)` with labels 1..10, where 10 is the digit 0."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
        X, y = mat["X"], mat["y"]
    except Exception as err:
        raise DatasetError(f"{path} is not a readable SVHN .mat file ({type(err).__name__}: {err})") from err
    if X.ndim != 4 or X.shape[2] != 3 or X.dtype != np.uint8:
        raise DatasetError(f"{path}: expected X of shape (32, 32, 3, N) uint8, got {X.shape} {X.dtype}")
    labels = y.reshape(-1).astype(np.int64) % 10  # SVHN stores the digit 0 as 10
    return np.ascontiguousarray(X.transpose(3, 2, 0, 1)), labels


def _svhn(key: str, root: Path) -> ImageArrays:
    from torchvision import datasets

    folder = root / "svhn"
    splits = []
    for split in ("train", "test"):
        path = folder / f"{split}_32x32.mat"
        if not path.is_file():
            try:
                datasets.SVHN(str(folder), split=split, download=True)
            except Exception as err:
                raise _download_failed("SVHN", root, err, "svhn/train_32x32.mat and svhn/test_32x32.mat") from err
        splits += read_svhn_mat(path)
    return ImageArrays(key, *splits, source=f"SVHN .mat files in {folder}")


def _to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    raise DatasetError(f"{what}: expected images (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3, got {x.shape}")


def load_npz(path: Path) -> ImageArrays:
    try:
        with np.load(path) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise DatasetError(f"{path} lacks {sorted(missing)}; a keras-style .npz holds x_train, y_train, "
                                   f"x_test, y_test (found {sorted(f.files)})")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from err
    for k in ("x_train", "x_test"):
        if arrays[k].dtype != np.uint8:
            raise DatasetError(f"{path}: {k} must be uint8 pixels (0..255), got {arrays[k].dtype}")
    return ImageArrays(
        path.stem,
        _to_nchw(arrays["x_train"], f"{path}:x_train"),
        arrays["y_train"].reshape(-1).astype(np.int64),
        _to_nchw(arrays["x_test"], f"{path}:x_test"),
        arrays["y_test"].reshape(-1).astype(np.int64),
        source=str(path),
    )


def load_folder(folder: Path, image_size: tuple[int, int] | None = None) -> ImageArrays:
    """Every image under `folder`; sub-folder names become labels; a seeded 10% is the test split.

    Images must share one size unless `image_size` (height, width) is given to resize them. All-grey
    folders give one channel, anything else RGB.
    """
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {folder}")
    classes = sorted({p.parent.relative_to(folder).as_posix() for p in files})
    images = []
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
                images.append(im.copy())
        except Exception as err:
            raise DatasetError(f"cannot read image {p} ({type(err).__name__}: {err})") from err
    grey = all(im.mode in ("1", "L", "I;16", "I") for im in images)
    mode = "L" if grey else "RGB"
    sizes = {im.size for im in images}
    if image_size is None and len(sizes) > 1:
        raise DatasetError(f"images under {folder} have {len(sizes)} different sizes (e.g. {sorted(sizes)[:3]}, as "
                           f"width x height); pass an image size (height, width) to resize them all")
    arrs = []
    for im in images:
        im = im.convert(mode)
        if image_size is not None:
            im = im.resize((image_size[1], image_size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        arrs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    x = np.stack(arrs)
    y = np.array([classes.index(p.parent.relative_to(folder).as_posix()) for p in files], dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = max(1, int(round(FOLDER_TEST_FRACTION * len(x)))) if len(x) > 1 else 0
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    return ImageArrays(folder.name, x[train_idx], y[train_idx], x[test_idx], y[test_idx], source=str(folder))
