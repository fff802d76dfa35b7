"""The paper's metric and a tighter one, in nats per image (and bits per sub-pixel); `draw-service evaluate`.

- NLL bound (the paper's): the negative ELBO with one posterior sample per image, averaged over the
  split: recon + KL. It upper-bounds −log p(x) in expectation.
- Importance-weighted bound (Burda et al., 2016) with k samples: −log (1/k) Σ_i p(x, z_i)/q(z_i|x),
  tighter than the ELBO for k > 1 and equal to it in expectation for k = 1.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.batches import eval_batches
from ..model import DRAW
from ..model.likelihood import bits_per_dim
from ..settings import Settings, option

log = logging.getLogger(__name__)


@torch.no_grad()
def bound_sums(model: DRAW, images: np.ndarray, batch_size: int = 500, iw_samples: int = 0, seed: int = 0,
               device: torch.device | str = "cpu", progress=None) -> dict[str, float]:
    """Sums over `images` `(N, C, H, W)` uint8 of the per-image bounds, so workers can add theirs up.

    Returns `count`, `nll` (ELBO bound), `recon`, `kl`, and with `iw_samples` k > 0 also `iwae`.
    """
    device = torch.device(device)
    g = torch.Generator(device).manual_seed(seed)
    sums = {"count": 0.0, "nll": 0.0, "recon": 0.0, "kl": 0.0}
    if iw_samples:
        sums["iwae"] = 0.0
    was_training = model.training
    model.eval()
    k = max(iw_samples, 1)
    for x in eval_batches(images, max(1, batch_size // k) if iw_samples else batch_size, device):
        out = model(x, generator=g)
        sums["count"] += len(x)
        sums["nll"] += out.loss.sum().item()
        sums["recon"] += out.recon.sum().item()
        sums["kl"] += out.kl.sum().item()
        if iw_samples:
            out_k = model(x.repeat(k, 1, 1, 1), generator=g)  # (k·B) rows, sample i of image j at i·B + j
            log_w = out_k.log_weight().view(k, len(x))
            sums["iwae"] += -(torch.logsumexp(log_w, 0) - math.log(k)).sum().item()
        if progress is not None:
            progress.update(len(x))
    model.train(was_training)
    return sums


def bounds_from_sums(sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["count"], 1.0)
    out = {"nll_bound": sums["nll"] / n, "recon": sums["recon"] / n, "kl": sums["kl"] / n, "count": int(sums["count"])}
    if "iwae" in sums:
        out["iwae_bound"] = sums["iwae"] / n
    return out


@dataclass(frozen=True)
class EvaluateConfig(Settings):
    component = "evaluate"

    checkpoint: str | None = option(None, required=True, help="checkpoint folder or file, local or s3://")
    dataset: str | None = option(None, help="evaluate on this dataset instead of the one the checkpoint was "
                                            "trained on")
    binarize: bool | None = option(None, help="binarise the images (default: as the checkpoint was trained)")
    split: str = option("test", choices=("train", "validation", "test"),
                        help="validation: the images a search held out of the training split")
    iw_samples: int = option(0, min=0, help="k for the importance-weighted bound (0: skip)")
    limit: int | None = option(None, min=1, help="only the first N images of the split")
    batch_size: int = option(500, min=1, help="images per batch")
    seed: int = option(0, min=0, help="seeds the posterior samples")
    device: str = option("auto", choices=("auto", "cpu", "cuda"), help="where to evaluate")
    quiet: bool = option(False, help="no progress bar")


def evaluate_command(cfg: EvaluateConfig) -> dict[str, Any]:
    """`draw-service evaluate`: a checkpoint's bounds on a split of its dataset (or another)."""
    from tqdm import tqdm

    from .. import checkpoint
    from ..data.batches import binarize_fixed
    from ..data.config import DataConfig
    from ..data.worker import load_worker_data
    from ..device import pick_device
    from ..settings import require

    require(cfg, "checkpoint")
    device = pick_device(cfg.device)
    model, state = checkpoint.load_model(cfg.checkpoint, device)
    trained_on = (state.get("train_config") or {}).get("data")
    if not trained_on and not cfg.dataset:
        raise checkpoint.CheckpointError(f"{cfg.checkpoint} does not say which data it was trained on: "
                                         f"pass --dataset")
    data_cfg = DataConfig.from_dict(trained_on or {})
    held_out = cfg.split == "test" or (cfg.split == "validation" and bool(data_cfg.validation_stride))
    if cfg.split == "validation" and not held_out:
        log.warning("%s trained on every training image (no --validation-stride): its validation split, every "
                    "10th training image, holds images it has seen; --split test is held out", cfg.checkpoint)
    stride = {"test": 0, "validation": data_cfg.validation_stride or 10, "train": data_cfg.validation_stride}
    data_cfg = data_cfg.replace(dataset=cfg.dataset or data_cfg.dataset, test_limit=cfg.limit,
                                train_limit=cfg.limit if cfg.split == "train" else None,
                                validation_stride=stride[cfg.split])
    if cfg.binarize is not None:
        data_cfg = data_cfg.replace(binarize=cfg.binarize)
    data = load_worker_data(data_cfg)
    if tuple(data.image_shape) != tuple(model.image_shape):
        raise ValueError(f"{data.name} images are {data.image_shape} (C, H, W) but the model draws "
                         f"{tuple(model.image_shape)}")
    images = data.eval
    if cfg.split == "train":
        images = binarize_fixed(data.train) if data.binarize else data.train
    with tqdm(total=len(images), desc=f"evaluate {cfg.split}", unit="img", disable=cfg.quiet, mininterval=2) as bar:
        torch.manual_seed(cfg.seed)
        bounds = bounds_from_sums(bound_sums(model, images, cfg.batch_size, iw_samples=cfg.iw_samples, seed=cfg.seed,
                                             device=device, progress=bar))
    dims = math.prod(model.image_shape)
    result = {"checkpoint": cfg.checkpoint, "dataset": data.name, "split": cfg.split, "held_out": held_out,
              "binarized": data.binarize,
              "likelihood": model.config.likelihood, "step": state["step"], **bounds,
              "bits_per_dim": bits_per_dim(bounds["nll_bound"], dims)}
    if cfg.iw_samples:
        result.update({"iw_samples": cfg.iw_samples, "iwae_bits_per_dim": bits_per_dim(bounds["iwae_bound"], dims)})
    return result
