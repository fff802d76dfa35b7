"""`make bench`: speed (and quality) figures as JSON on stdout; progress on stderr.

Sections (all but quality by default, or pick with --only):
  model    training and sampling images/s at the paper's MNIST configuration (model_speed.py)
  ray      the Ray Train overhead, data waiting from S3, shards against Ray Data (ray_overhead.py)
  serve    the HTTP service under load, batched and not (serve_load.py, with load_generator.py)
  quality  time to quality: recipes trained for a budget, the test bound against minutes (quality.py)
  precision  fp32 against bf16 on the CPU: training and sampling images/s of the paper and colour models, and
             the test bound after the same steps in both (precision.py)
Timings are the best of several repeats (this kind of machine is a shared VM; the best is the least
disturbed), taken side by side in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch

from .common import machine, say


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=["model", "ray", "serve", "quality", "precision"],
                   default=["model", "ray", "serve"],
                   help="sections to run (quality and precision, which train, only when named)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip the compiled model (saves ~2 min of compiling)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ray-steps", type=int, default=20)
    p.add_argument("--serve-requests", type=int, default=96)
    p.add_argument("--serve-n", type=int, default=4, help="images per request")
    p.add_argument("--quality-runs", nargs="+", default=["mnist-attention"], help="recipes (benchmarks/quality.py)")
    p.add_argument("--quality-minutes", type=float, default=60.0, help="training budget per recipe")
    p.add_argument("--quality-epochs", type=float, default=None,
                   help="epochs the schedule plans for (default: the recipe's); fit it to the machine's speed so the "
                        "cosine decay completes inside the budget")
    p.add_argument("--quality-out", default="bench-out/quality", help="runs, quality.json and quality.png go here")
    p.add_argument("--bound-steps", type=int, default=1000, help="precision: training steps before the bounds compare")
    p.add_argument("--bound-models", nargs="*", default=["paper_mnist"], choices=["paper_mnist", "colour_cifar10"],
                   help="precision: the models whose bounds are compared (each trains twice)")
    a = p.parse_args(argv)
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    # Only the JSON goes to stdout: what Ray, Serve and the training loop print goes to stderr.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    report: dict[str, Any] = {"machine": machine()}
    t0 = time.perf_counter()
    if "model" in a.only:
        say("model: training and sampling speed")
        from .model_speed import bench_model

        report["model"] = bench_model(a.repeats, not a.no_compile, a.device)
    if "ray" in a.only:
        say("ray: Train overhead and data loading")
        from .ray_overhead import bench_ray

        report["ray"] = bench_ray(a.ray_steps)
    if "serve" in a.only:
        say("serve: HTTP load")
        from .serve_load import bench_serve

        report["serve"] = bench_serve(a.serve_requests, a.serve_n)
    if "quality" in a.only:
        say(f"quality: {', '.join(a.quality_runs)}, {a.quality_minutes:g} minutes each")
        from pathlib import Path

        from .quality import bench_quality

        report["quality"] = bench_quality(a.quality_runs, a.quality_minutes, a.device, Path(a.quality_out),
                                          epochs=a.quality_epochs)
    if "precision" in a.only:
        say("precision: fp32 against bf16")
        from pathlib import Path

        from .precision import bench_precision

        report["precision"] = bench_precision(a.repeats, a.bound_steps, a.bound_models, Path("bench-out/precision"))
    report["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2), file=json_out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
