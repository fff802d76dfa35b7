"""fp32 against bf16, side by side in one process (`make bench BENCH_ARGS="--only precision"`):

  training  images/s of the training step a run takes (`EagerStep`, compiled, batch 100, Adam) for the paper's
            MNIST model and the shipped colour model, the two precisions interleaved
  sampling  images/s of generation (`DRAW.decode`, 100 images) for both models
  bound     the test bound after the same steps from the same seed in both precisions: real `draw-service
            train` runs (their evaluations run in fp32, so the bounds compare the weights each precision
            trained)

`fp32_small_pages_train_images_per_s` is the fp32 step with PyTorch's tensors on 4 kB pages, as every run
trained before `draw_service/__init__.py` turned huge pages on (a child process: PyTorch reads the switch
once).

On a CPU without native bf16 (neither avx512_bf16 nor amx_bf16) bf16 is emulated: the section still runs and
says so (`native_bf16` null), and `--precision auto` would not choose it there.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .common import BATCH, MNIST_SHAPE, PAPER, best_time, say

PRECISIONS = ("fp32", "bf16")
# The shipped colour model's architecture (models/cifar10-attention, benchmarks/quality.py's CIFAR10_RECIPE).
COLOUR = dict(T=12, enc_size=256, dec_size=256, z_size=32, read_n=6, write_n=8, likelihood="logistic-mixture",
              mixtures=5)
MODELS = {"paper_mnist": (dict(PAPER, likelihood="bernoulli"), MNIST_SHAPE, 8),
          "colour_cifar10": (COLOUR, (3, 32, 32), 4)}  # architecture, image shape, compile steps per graph
BOUND_ARGV = {"paper_mnist": ["--dataset", "mnist"],
              "colour_cifar10": ["--dataset", "cifar10", "--likelihood", "logistic-mixture", "--mixtures", "5", "--T",
                                 "12", "--z-size", "32", "--read-n", "6", "--write-n", "8", "--lr", "3e-3"]}


def _images(shape: tuple[int, ...], likelihood: str) -> torch.Tensor:
    x = torch.randint(0, 256, (BATCH, *shape)).float() / 255
    return x.round() if likelihood == "bernoulli" else x


def bench_speed(name: str, repeats: int, precisions: tuple[str, ...] = PRECISIONS) -> dict[str, Any]:
    from draw_service.device import autocast
    from draw_service.model import DRAW, DRAWConfig
    from draw_service.train.step import EagerStep

    arch, shape, k = MODELS[name]
    cfg = DRAWConfig(**arch)
    torch.manual_seed(0)
    x, eps = _images(shape, cfg.likelihood), torch.randn(cfg.T, BATCH, cfg.z_size)
    steps, decoders = {}, {}
    for precision in precisions:
        torch.manual_seed(0)
        model = DRAW(cfg, shape).compile_step(k)  # one model per precision: each compiles its own graphs
        step = EagerStep(model, torch.optim.Adam(model.parameters(), 1e-4), 10.0, precision == "bf16")
        steps[precision] = lambda step=step: step(x, eps)
        t = time.perf_counter()
        steps[precision]()
        say(f"  {name} {precision}: compiled the step in {time.perf_counter() - t:.0f} s")
        steps[precision]()
        latents = torch.randn(cfg.T, BATCH, cfg.z_size)

        def decode(model=model, latents=latents, precision=precision):
            with torch.inference_mode(), autocast(torch.device("cpu"), precision):
                model.decode(latents)

        decode()
        decoders[precision] = decode
    train: dict[str, list[float]] = {p: [] for p in precisions}
    sample: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(repeats):  # interleaved: a noisy moment on the shared VM hurts both alike
        for p in precisions:
            train[p].append(best_time(steps[p], 1, inner=3))
            sample[p].append(best_time(decoders[p], 1, inner=3))
    out = {"train_images_per_s": {p: round(BATCH / min(ts), 1) for p, ts in train.items()},
           "train_images_per_s_median": {p: round(BATCH / statistics.median(ts), 1) for p, ts in train.items()},
           "sample_images_per_s": {p: round(BATCH / min(ts), 1) for p, ts in sample.items()}}
    if len(precisions) == 2:
        out["train_speedup"] = round(out["train_images_per_s"]["bf16"] / out["train_images_per_s"]["fp32"], 2)
        out["sample_speedup"] = round(out["sample_images_per_s"]["bf16"] / out["sample_images_per_s"]["fp32"], 2)
    say(f"  {name}: {out}")
    return out


def fp32_on_small_pages(name: str, repeats: int) -> dict[str, Any]:
    """The fp32 step as it ran before tensors went on huge pages (THP_MEM_ALLOC_ENABLE=0, which PyTorch reads
    once per process): in a child process, right after this one's timings."""
    code = (f"import json; from benchmarks.precision import bench_speed; "
            f"print(json.dumps(bench_speed({name!r}, {repeats}, ('fp32',))))")
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_bound(name: str, steps: int, out_dir: Path) -> dict[str, Any]:
    from draw_service import storage
    from draw_service.train.run import train_command

    from .quality import train_config

    result: dict[str, Any] = {}
    for precision in PRECISIONS:
        out = out_dir / f"{name}-{precision}"
        storage.delete(str(out))
        argv = [*BOUND_ARGV[name], "--steps", str(steps), "--eval-every", str(steps), "--seed", "0", "--compile",
                "--compile-steps", str(MODELS[name][2]), "--precision", precision, "--no-wandb", "--quiet",
                "--out", str(out)]
        say(f"  {name} {precision}: draw-service train {shlex.join(argv)}")
        final = train_command(train_config(argv))
        result[precision] = {"command": "draw-service train " + shlex.join(argv),
                             **{k: final[k] for k in ("nll_bound", "bits_per_dim", "eval_split", "eval_images",
                                                      "images_per_s", "train_minutes") if k in final}}
    result["bound_change"] = round(result["bf16"]["nll_bound"] / result["fp32"]["nll_bound"] - 1, 5)
    say(f"  {name} bound after {steps} steps: fp32 {result['fp32']['nll_bound']:.2f}, bf16 "
        f"{result['bf16']['nll_bound']:.2f} ({100 * result['bound_change']:+.2f} %)")
    return result


def bench_precision(repeats: int, bound_steps: int, bound_models: list[str], out_dir: Path) -> dict[str, Any]:
    from draw_service.device import describe, pick_precision

    cpu = torch.device("cpu")
    report: dict[str, Any] = {"hardware": describe(cpu), "auto_picks": pick_precision("auto", cpu)[0]}
    for name in MODELS:
        report[name] = bench_speed(name, repeats)
        small = fp32_on_small_pages(name, repeats)
        report[name]["fp32_small_pages_train_images_per_s"] = small["train_images_per_s"]["fp32"]
        report[name]["bf16_vs_fp32_small_pages"] = round(report[name]["train_images_per_s"]["bf16"]
                                                         / small["train_images_per_s"]["fp32"], 2)
    for name in bound_models:
        report[name]["bound_after_steps"] = {"steps": bound_steps, **bench_bound(name, bound_steps, out_dir)}
    return report
