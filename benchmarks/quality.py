"""Time to quality: train recipes for a wall-clock budget and record the test bound against minutes of
training and epochs, as JSON and a PNG plot (bound vs minutes, one line per run).

    make bench BENCH_ARGS="--only quality --quality-runs mnist-attention --quality-minutes 60"
    python -m benchmarks.quality --plot bench-out/quality/quality.json docs/bench/*.quality.json --out docs/quality.png

A recipe is a list of `draw-service train` options; the budget becomes `--train-time-limit`, which counts
training time only (evaluations are not charged to it). The test bound is measured every `eval_every`
steps on the whole binarised test set, so every point of the curve is a real test-set number.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from .common import say

PAPER_BOUNDS = {"with attention": 80.97, "without attention": 87.40}  # Gregor et al., 2015, table 2
# Colour, in bits/dim on CIFAR-10: Conv DRAW (Gregor et al., 2016) and a uniform guess over the 256 values
COLOUR_ANCHORS = {"Conv DRAW": 3.58, "uniform": 8.0}

# The paper's MNIST model (T=64, 256/256, z=100, read 2, write 5) with the recipe measured here (README,
# "Results"): Adam with a short warm-up and a cosine decay over the planned epochs.
# On the 2-core CPU without AVX-512 the compiled attention step trains 106-129 images/s: 7 epochs fit an
# hour, so the cosine completes inside it (an AVX-512 VM fits 13, `--quality-epochs 13`). The attention
# model starts near a collapsed posterior; a KL warm-up over the first epoch pulls it out sooner, and with it
# a higher rate pays (400-step probes, README "The hour's recipe now", logs in docs/quality-runs/probes/:
# 187.5 nats plain, 181.5 with a 300-step KL warm-up, 190.7 at lr 4e-3 alone, 179.8 at lr 4e-3 with a
# 600-step KL warm-up).
# CIFAR-10 (all 50k training images where cifar10-50k.npz is, 1k test) in bits/dim: the winner of the
# 8-minute probes (README, "Colour";
# `python -m benchmarks.probes --set cifar10`, docs/quality-runs/probes-cifar10/): the mixture of 5 logistics
# with colour coupling, on the shipped architecture, at lr 3e-3 (4e-3 beat 2e-3 in the scale probes).
# Trained with every 10th image held out for validation, so the test split is scored once, at the end.
CIFAR10_RECIPE = ["--dataset", "cifar10", "--validation-stride", "10", "--likelihood", "logistic-mixture",
                  "--mixtures", "5", "--T", "12", "--z-size", "32", "--read-n", "6", "--write-n", "8", "--lr", "3e-3",
                  "--lr-schedule", "cosine", "--warmup-steps", "200", "--iw-samples", "10", "--compile",
                  "--compile-steps", "4", "--no-wandb", "--quiet"]
_CPU = ["--compile", "--lr-schedule", "cosine", "--warmup-steps", "200", "--iw-samples", "10",
        "--eval-every", "600", "--no-wandb", "--quiet"]
# On one H100 the CUDA-graph step trains about 6,000 images/s at batch 100: 150 epochs in 25 minutes. (The KL
# warm-up of its attention recipe is the CPU's measurement, carried over; no GPU has run it yet.)
_GPU = ["--device", "cuda", "--compile", "--cuda-graphs", "--lr", "2e-3", "--lr-schedule", "cosine",
        "--warmup-steps", "200", "--epochs", "150", "--iw-samples", "10", "--eval-every", "6000", "--no-wandb",
        "--quiet"]
RECIPES: dict[str, dict[str, list[str]]] = {
    "mnist-attention": {"cpu": ["--epochs", "7", "--lr", "4e-3", "--kl-warmup-steps", "600", *_CPU],
                        "cuda": ["--kl-warmup-steps", "600", *_GPU]},
    "mnist-no-attention": {"cpu": ["--no-attention", "--epochs", "10", "--lr", "2e-3", *_CPU],
                           "cuda": ["--no-attention", *_GPU]},
    # On a 2-core AMD EPYC VM with avx512_bf16 the compiled mixture step trains about 300 images/s in bf16 (the
    # default there): 20 epochs of the 45k images of cifar10-50k.npz fit an hour (docs/quality-runs/
    # cifar10-bf16-60min.log). In fp32, on a CPU without bf16, about 150: give --quality-epochs 10.
    "cifar10": {"cpu": [*CIFAR10_RECIPE, "--epochs", "20", "--eval-every", "1000"],
                "cuda": [*CIFAR10_RECIPE, "--device", "cuda", "--cuda-graphs", "--epochs", "400",
                         "--eval-every", "5000"]},
}


def train_config(argv: list[str]):
    """The training configuration `draw-service train ARGV` would run."""
    from draw_service.cli import build_parser
    from draw_service.settings import read_options
    from draw_service.train.config import TrainConfig

    return read_options(TrainConfig(), build_parser().parse_args(["train", *argv]))


def curve(out: str) -> list[dict[str, float]]:
    """Every evaluation a run reported: minutes of training, epoch, test bound (and IWAE where measured)."""
    from draw_service import storage
    from draw_service.run_dir import RunDir

    run = RunDir(out)
    points = []
    for name in storage.list_dir(run.metrics):
        m = json.loads(storage.read_bytes(run.metrics.join(name)))
        if "nll_bound" in m:
            points.append({k: m[k] for k in m if k in ("step", "epoch", "train_minutes", "nll_bound", "bits_per_dim")
                           or k.startswith("iwae_bound")})
    return sorted(points, key=lambda p: p["step"])


def run_recipe(name: str, argv: list[str], minutes: float, out_dir: Path) -> dict[str, Any]:
    import torch

    from draw_service import storage
    from draw_service.device import describe, pick_device
    from draw_service.train.run import train_command

    out = out_dir / name
    storage.delete(str(out))  # a fresh run: the curve must start at zero minutes
    argv = [*argv, "--train-time-limit", f"{minutes:g}", "--out", str(out)]
    cfg = train_config(argv)
    say(f"  {name}: draw-service train {shlex.join(argv)}")
    final = train_command(cfg)
    return {"command": "draw-service train " + shlex.join(argv), "budget_minutes": minutes,
            "hardware": describe(pick_device(cfg.device)), "threads": torch.get_num_threads(),
            "points": curve(str(out)), "final": {k: v for k, v in final.items() if isinstance(v, (int, float))}}


def plot(results: dict[str, dict[str, Any]], path: Path, title: str | None = None) -> None:
    """Test bound against minutes of training, one line per run: nats for binarised MNIST with the paper's
    bounds, bits/dim for 8-bit runs (with Conv DRAW's for CIFAR-10; a plot holds one kind)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    commands = [run.get("command", "") for run in results.values()]
    cifar = any("cifar" in c or "svhn" in c for c in commands)
    # 8-bit pixels (a discretised likelihood) are scored in bits/dim, binarised ones in nats per image
    eight_bit = cifar or any("--likelihood logistic" in c for c in commands)
    key = "bits_per_dim" if eight_bit else "nll_bound"
    anchors = (COLOUR_ANCHORS if cifar else {"uniform": COLOUR_ANCHORS["uniform"]}) if eight_bit else PAPER_BOUNDS
    dataset = "CIFAR-10" if cifar else next((d for d in ("Fashion-MNIST", "MNIST") if any(
        d.lower().replace("-", "_") in c for c in commands)), "8-bit images")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for label, run in results.items():
        pts = run["points"]
        hw = run.get("hardware") or {}
        if isinstance(hw, str):  # a run recorded by hand names its hardware in words
            where = hw
        else:
            where = hw.get("gpu") or f"{hw.get('cpu', 'CPU')}, {run.get('threads', '?')} threads"
        ax.plot([p["train_minutes"] for p in pts], [p[key] for p in pts], marker="o", ms=3,
                label=f"{label} ({where})")
    lows = [p[key] for run in results.values() for p in run["points"]]
    if lows and eight_bit:
        ax.set_ylim(min(min(lows), min(anchors.values())) - 0.1, min(max(lows), 8.2) + 0.1)
    elif lows:
        ax.set_ylim(min(min(lows), 80.0) - 2, min(max(lows), 160.0) + 2)
    bottom, top = ax.get_ylim()
    for text, value in anchors.items():
        if not bottom <= value <= top:  # a label outside the axes would stretch the figure around it
            continue
        ax.axhline(value, ls="--", lw=1, color="grey")
        # x in axes units: the label stays at the left edge whatever the runs' minutes
        ax.annotate(f"{'' if eight_bit else 'paper, '}{text}: {value}", (0.01, value),
                    xycoords=ax.get_yaxis_transform(), xytext=(0, 3),
                    textcoords="offset points", fontsize=8, color="grey")
    ax.set_xlabel("minutes of training")
    ax.set_ylabel("bits/dim (lower is better)" if eight_bit else "test NLL bound (nats per image, lower is better)")
    ax.set_title(title or (f"DRAW on {dataset}: time to quality" if eight_bit else
                           "DRAW on binarised MNIST: time to quality"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def bench_quality(runs: list[str], minutes: float, device: str, out_dir: Path,
                  epochs: float | None = None) -> dict[str, Any]:
    results = {}
    for name in runs:
        if name not in RECIPES:
            raise SystemExit(f"unknown quality run {name!r}: choose from {', '.join(RECIPES)}")
        argv = list(RECIPES[name][device])
        if epochs is not None:
            argv[argv.index("--epochs") + 1] = f"{epochs:g}"
        results[name] = run_recipe(name, argv, minutes, out_dir)
        final = results[name]["final"]
        say(f"  {name}: {final.get('nll_bound'):.2f} nats ({final.get('bits_per_dim'):.4f} bits/dim) after "
            f"{final.get('train_minutes', math.nan):.1f} minutes")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quality.json").write_text(json.dumps(results, indent=2))
    plot(results, out_dir / "quality.png")
    return {"runs": results, "json": str(out_dir / "quality.json"), "plot": str(out_dir / "quality.png")}


def main(argv: list[str] | None = None) -> int:
    """Re-plot saved results together: `python -m benchmarks.quality --plot A.json B.json --out plot.png`."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=main.__doc__)
    p.add_argument("--plot", nargs="+", required=True, help="quality.json files written by the bench")
    p.add_argument("--out", required=True, help="the PNG to write")
    a = p.parse_args(argv)
    merged: dict[str, Any] = {}
    for path in a.plot:
        merged.update(json.loads(Path(path).read_text()))
    plot(merged, Path(a.out))
    print(json.dumps({"plot": a.out, "runs": sorted(merged)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
