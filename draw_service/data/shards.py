"""Datasets as Parquet shards plus a manifest, in any storage (`storage.py`): prepared once, read by rank.

Layout under a dataset URI:

    manifest.json                  written last: its presence means every shard is complete
    train/part-00000.parquet ...   columns: image (fixed-size binary, C·H·W uint8), label, index
    test/part-00000.parquet ...

The manifest records the image shape, counts, each shard's row count and SHA-256, the source and the
binarisation the paper would use. Readers check all of it, so a missing, truncated or altered shard
fails with a message naming that shard instead of training on garbage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .. import storage
from .config import PrepareConfig
from .sources import DatasetError, ImageArrays, Part, default_binarize, load_source

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "draw-service/dataset"
VERSION = 1
DEFAULT_SHARD_SIZE = 5000


def _schema(nbytes: int) -> pa.Schema:
    return pa.schema([("image", pa.binary(nbytes)), ("label", pa.int64()), ("index", pa.int64())])


def _shard_bytes(images: np.ndarray, labels: np.ndarray, start: int) -> bytes:
    n, nbytes = len(images), int(np.prod(images.shape[1:]))
    flat = pa.py_buffer(np.ascontiguousarray(images).reshape(-1).tobytes())
    image_col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(nbytes), n, [None, flat])
    table = pa.Table.from_arrays(
        [image_col, pa.array(labels, pa.int64()), pa.array(np.arange(start, start + n), pa.int64())],
        schema=_schema(nbytes))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def is_prepared(spec: str) -> bool:
    """Whether `spec` is the URI of a prepared dataset (a folder or prefix holding a manifest)."""
    if not spec.startswith(("s3://", "file://", "/", ".", "~")) and "/" not in spec:
        return False  # a bare name: mnist, cifar10, ...
    try:
        return storage.exists(storage.resolve(spec).join(MANIFEST))
    except storage.StorageError:
        if spec.startswith("s3://"):
            raise
        return False


_SHARD = {
    "type": "object", "required": ["path", "count", "sha256"],
    "properties": {
        # a file of its own split's folder, never a path that climbs out of the dataset
        "path": {"type": "string", "pattern": r"^(train|test)/[A-Za-z0-9_-][A-Za-z0-9_.-]*\.parquet$"},
        "count": {"type": "integer", "minimum": 0},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}
_SPLIT = {"type": "object", "required": ["count", "shards"],
          "properties": {"count": {"type": "integer", "minimum": 0}, "shards": {"type": "array", "items": _SHARD}}}
MANIFEST_SCHEMA = {
    "type": "object", "required": ["format", "version", "name", "image_shape", "binarize", "splits"],
    "properties": {
        "format": {"const": FORMAT}, "version": {"const": VERSION}, "name": {"type": "string"},
        "image_shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3, "maxItems": 3},
        "binarize": {"type": "boolean"},
        "splits": {"type": "object", "required": ["train", "test"], "properties": {"train": _SPLIT, "test": _SPLIT}},
    },
}


def read_manifest(uri: str) -> dict[str, Any]:
    import jsonschema

    loc = storage.resolve(uri).join(MANIFEST)
    try:
        manifest = json.loads(storage.read_bytes(loc))
    except FileNotFoundError as err:
        raise DatasetError(f"{uri} is not a prepared dataset: {MANIFEST} is missing (an unfinished "
                           f"`draw-service prepare`?)") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{loc.uri} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise DatasetError(f"{loc.uri} is not a draw-service dataset manifest (version {VERSION})")
    try:
        jsonschema.validate(manifest, MANIFEST_SCHEMA)
    except jsonschema.ValidationError as err:
        where = "/".join(map(str, err.absolute_path)) or "the top level"
        raise DatasetError(f"{loc.uri} is not a valid manifest: at {where}, {err.message}") from err
    return manifest


def prepare(arrays: ImageArrays, dest: str, shard_size: int = DEFAULT_SHARD_SIZE, force: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Write `arrays` as shards plus manifest under `dest`; safe to re-run (an intact copy is kept)."""
    loc = storage.check_access(dest)
    if not force and storage.exists(loc.join(MANIFEST)):
        try:
            manifest = read_manifest(loc.uri)
            if manifest["source"] == arrays.source and manifest["image_shape"] == list(arrays.image_shape):
                verify(loc.uri, manifest)
                log.info("%s already holds %s (verified); nothing to do", loc.uri, manifest["name"])
                return manifest
        except DatasetError as err:
            log.warning("rewriting %s: %s", loc.uri, err)
    storage.delete(loc.join(MANIFEST))  # readers must not trust an old manifest while shards change

    splits: dict[str, Any] = {}
    total = len(arrays.train) + len(arrays.test)
    with tqdm(total=total, desc=f"prepare {arrays.name}", unit="img", disable=not progress) as bar:
        for split in ("train", "test"):
            images, labels = arrays.split(split)
            shards = []
            for i, start in enumerate(range(0, len(images), shard_size)):
                data = _shard_bytes(images[start : start + shard_size], labels[start : start + shard_size], start)
                path = f"{split}/part-{i:05d}.parquet"
                storage.write_bytes(loc.join(path), data)
                n = min(shard_size, len(images) - start)
                shards.append({"path": path, "count": n, "sha256": hashlib.sha256(data).hexdigest()})
                bar.update(n)
            splits[split] = {"count": int(len(images)), "shards": shards}
    manifest = {
        "format": FORMAT, "version": VERSION, "name": arrays.name, "source": arrays.source,
        "image_shape": list(arrays.image_shape), "binarize": default_binarize(arrays.name),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "splits": splits,
    }
    storage.write_bytes(loc.join(MANIFEST), json.dumps(manifest, indent=2).encode())
    return manifest


def _read_shard(loc: storage.Location, shard: dict[str, Any], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A shard's images `(n, C, H, W)` and their indices in the split, after checking it against the manifest."""
    where = loc.join(shard["path"])
    try:
        data = storage.read_bytes(where)
    except FileNotFoundError as err:
        raise DatasetError(f"shard {where.uri} listed in the manifest is missing; "
                           f"re-run `draw-service prepare`") from err
    if hashlib.sha256(data).hexdigest() != shard["sha256"]:
        raise DatasetError(f"shard {where.uri} is corrupt (its SHA-256 does not match the manifest); "
                           f"re-run `draw-service prepare --force`")
    table = pq.read_table(pa.BufferReader(data))
    nbytes = int(np.prod(shape))
    if table.schema.field("image").type != pa.binary(nbytes) or table.num_rows != shard["count"]:
        raise DatasetError(f"shard {where.uri} holds {table.num_rows} images of type {table.schema.field('image').type}"
                           f", but the manifest promises {shard['count']} of shape {tuple(shape)}")
    col = table.column("image").combine_chunks()
    images = np.frombuffer(col.buffers()[1], dtype=np.uint8, count=nbytes * len(col)).reshape(-1, *shape)
    return images.copy(), table.column("index").to_numpy()


def verify(uri: str, manifest: dict[str, Any] | None = None) -> None:
    manifest = manifest or read_manifest(uri)
    loc = storage.resolve(uri)
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            _read_shard(loc, shard, tuple(manifest["image_shape"]))


class ShardReader:
    """A prepared dataset, read by workers: each reads only the shards it needs."""

    def __init__(self, uri: str):
        self.manifest = read_manifest(uri)
        self.loc = storage.resolve(uri)
        self.name = self.manifest["name"]
        self.image_shape = tuple(self.manifest["image_shape"])
        self.binarize = bool(self.manifest["binarize"])

    def read(self, split: str, rank: int, world: int, limit: int | None) -> Part:
        """This worker's images of a split with their indices, and the split's size (after `limit`).

        Whole shards go round the workers when there are enough of them; otherwise, or with a `limit`,
        each worker takes every world-th row of the shards needed."""
        info = self.manifest["splits"][split]
        total = min(limit, info["count"]) if limit is not None else info["count"]
        shards, covered = [], 0
        for shard in info["shards"]:
            if covered >= total:
                break
            shards.append(shard)
            covered += shard["count"]
        if limit is None and len(shards) >= world:
            parts = [_read_shard(self.loc, s, self.image_shape) for s in shards[rank::world]]
        else:
            images, indices = (np.concatenate(a) for a in zip(*[_read_shard(self.loc, s, self.image_shape)
                                                                 for s in shards]))
            parts = [(images[:total][rank::world], indices[:total][rank::world])]
        if not parts:
            return Part(np.zeros((0, *self.image_shape), np.uint8), np.zeros(0, np.int64), total)
        images, indices = (np.concatenate(a) for a in zip(*parts))
        return Part(images, indices, total)

    def check_listing(self) -> None:
        """Every shard the manifest lists is there (without reading it): a driver's check before workers start."""
        for split in self.manifest["splits"].values():
            for shard in split["shards"]:
                where = self.loc.join(shard["path"])
                if not storage.exists(where):
                    raise DatasetError(f"shard {where.uri} listed in the manifest is missing; "
                                       f"re-run `draw-service prepare`")


def prepare_command(cfg: PrepareConfig) -> dict[str, Any]:
    """`draw-service prepare`: the source into shards, a line about them on stderr, a summary for stdout."""
    import sys

    from ..settings import require

    require(cfg, "dest")
    manifest = prepare_source(cfg.dataset, cfg.dest, image_size=cfg.image_size, shard_size=cfg.shard_size,
                              train_limit=cfg.train_limit, test_limit=cfg.test_limit, force=cfg.force,
                              progress=not cfg.quiet)
    print(describe(manifest, cfg.dest), file=sys.stderr)
    return {"dataset": cfg.dest, "name": manifest["name"], "image_shape": manifest["image_shape"],
            **{f"{k}_count": v["count"] for k, v in manifest["splits"].items()}}


def prepare_source(spec: str, dest: str, image_size=None, shard_size: int = DEFAULT_SHARD_SIZE,
                   train_limit: int | None = None, test_limit: int | None = None,
                   force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Any source the data layer reads → shards under `dest`."""
    storage.check_access(dest)  # before loading anything: fail fast on bad storage
    arrays = load_source(spec, image_size=image_size)
    if train_limit is not None or test_limit is not None:
        arrays = ImageArrays(arrays.name, arrays.train[:train_limit], arrays.train_labels[:train_limit],
                             arrays.test[:test_limit], arrays.test_labels[:test_limit],
                             source=f"{arrays.source} (first {train_limit or 'all'} train, {test_limit or 'all'} test)")
    return prepare(arrays, dest, shard_size=shard_size, force=force, progress=progress)


def describe(manifest: dict[str, Any], uri: str) -> str:
    s = manifest["splits"]
    return (f"{manifest['name']} at {uri}: {s['train']['count']} train / {s['test']['count']} test images "
            f"{tuple(manifest['image_shape'])} in {len(s['train']['shards']) + len(s['test']['shards'])} shards")
