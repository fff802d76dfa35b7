"""Datasets as Parquet shards plus a manifest in object storage (filled in by the storage issue)."""

from __future__ import annotations


def is_prepared(spec: str) -> bool:
    return False
