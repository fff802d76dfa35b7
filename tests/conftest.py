"""Shared fixtures. Ray, S3 and HTTP fixtures start real servers once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST from DRAW_DATA_ROOT (CI points it at ../shared/datasets)."""
    from draw_service.data.sources import load_source

    return load_source("mnist")
