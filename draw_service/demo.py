"""`make demo`: the whole product on one machine, on embedded defaults, in under ten minutes.

A local Ray cluster; MNIST prepared into Parquet shards in a local store; a small hyperparameter search
(Ray Tune, ASHA early stopping, one Ray Train run per trial); the best checkpoint's NLL bound on the
test set; the best checkpoint served over HTTP by Ray Serve, beside the models the repository ships (one
service, Serve's model multiplexing picks the model per request, the page has a picker); samples and a
drawing animation fetched from the endpoint into the output folder, from the demo's model and from the
shipped attention model; then a clean shutdown (or, with --keep-serving, the endpoint stays up until
Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import Settings, option

STAGES = 6
SHOWCASE = "mnist-attention"  # the shipped model whose samples the demo fetches beside its own


@dataclass(frozen=True)
class DemoConfig(Settings):
    component = "demo"

    out: str = option("demo-out", help="output folder: pictures, the local store, the search")
    trials: int = option(4, min=1, help="trials in the search")
    steps: int = option(1800, min=1, help="training steps per trial, at most")
    eval_every: int = option(300, min=1, help="steps between evaluations (an ASHA rung each)")
    batch_size: int = option(64, min=1, cli=False, help="batch size of every trial")
    concurrent: int = option(2, min=1, cli=False, help="trials at once")
    port: int = option(8000, min=1, max=65535, help="the HTTP service's port")
    keep_serving: bool = option(False, help="keep the endpoint up until Ctrl-C")
    wandb: bool = option(False, help="log the trials to W&B (offline files)")
    verbose: bool = option(False, help="Ray's, Tune's and Serve's own output too (status tables, every worker's "
                                       "and replica's log lines)")


class Progress:
    def __init__(self):
        self.t0 = time.perf_counter()

    def stage(self, k: int, text: str) -> None:
        print(f"\n[{k}/{STAGES} {self.elapsed()}] {text}", flush=True)

    def note(self, text: str) -> None:
        print(f"        {text}", flush=True)

    def elapsed(self) -> str:
        s = int(time.perf_counter() - self.t0)
        return f"{s // 60:d}:{s % 60:02d}"


def run(opts: DemoConfig) -> dict[str, Any]:
    """The six stages, one function each."""
    from .ray_cluster import connect

    p = Progress()
    out = Path(opts.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    if not opts.verbose:  # Serve's start-up lines (it sets its logger's level itself): the demo says what it does
        logging.getLogger("ray.serve").addFilter(lambda record: record.levelno >= logging.WARNING)
    dataset = prepare(p, out / "store")
    p.stage(2, f"Starting a local Ray cluster ({os.cpu_count()} CPUs)")
    connect(log_to_driver=opts.verbose)
    best = search(p, opts, dataset, out / "store" / "demo-search")
    bound = evaluate_best(p, best, dataset)
    url, info = serve_and_fetch(p, opts, best, out)
    summary = {
        "best_trial": best["trial_id"], "validation_nll_bound": round(best["nll_bound"], 2),
        "test_nll_bound": round(bound["nll_bound"], 2), "model": info["model"], "checkpoint": best["checkpoint"],
        "best_record": best["best_record"], "endpoint": url, "docs": f"{url}/docs",
        "samples": str(out / "samples.png"), "drawing": str(out / "drawing.gif"), "models": info["models"],
        **({"shipped_samples": str(out / f"samples-{SHOWCASE}.png")} if SHOWCASE in info["models"] else {}),
        "wall_time": p.elapsed(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    m = info["model"]
    patches = f"read {m['read_n']}, write {m['write_n']}" if m["attention"] else "no attention"
    p.stage(6, f"Done: the best trial's model (T={m['T']}, {m['enc_size']}/{m['dec_size']} LSTMs, z={m['z_size']}, "
               f"{patches}) scores {summary['test_nll_bound']} nats on the test set")
    p.note(f"its samples: {summary['samples']}, its drawing: {summary['drawing']}")
    if "shipped_samples" in summary:
        p.note(f"the shipped {SHOWCASE} model's samples: {summary['shipped_samples']}")
    p.note(f"all of it as JSON: {out / 'summary.json'}")
    if opts.keep_serving:
        p.note(f"serving at {url}/ (the page: pick a model, draw, upload); API docs at {url}/docs; Ctrl-C stops")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    else:
        p.note(f"the endpoint is closed now; `make demo DEMO_ARGS=--keep-serving` keeps {url}/ up to try the page")
    import ray
    from ray import serve

    if os.environ.get("RAY_ADDRESS"):  # a cluster the demo joined goes on: take the service off it
        serve.shutdown()
    ray.shutdown()  # a local cluster goes whole, the service with it
    return summary


def prepare(p: Progress, store: Path) -> str:
    """Stage 1: MNIST as Parquet shards in the local store; returns the prepared dataset's folder."""
    from .data import shards
    from .data.sources import data_root

    p.stage(1, f"Preparing MNIST (from {data_root()}) into Parquet shards in {store}/datasets/mnist")
    dataset = str(store / "datasets" / "mnist")
    manifest = shards.prepare_source("mnist", dataset, progress=True)
    p.note(shards.describe(manifest, dataset))
    return dataset


def search(p: Progress, opts: DemoConfig, dataset: str, search_dir: Path) -> dict[str, Any]:
    """Stage 3: the search, afresh; returns its best record."""
    from . import storage
    from .data.config import DataConfig
    from .tracking import TrackingConfig
    from .train.config import RayConfig, TrainConfig
    from .tune.config import SearchConfig
    from .tune.search import run_search

    if search_dir.exists():
        p.note(f"removing the previous demo search in {search_dir}")
        storage.delete(str(search_dir))
    p.stage(3, f"Searching: {opts.trials} trials of up to {opts.steps} steps, {opts.concurrent} at a time, "
               f"ASHA stopping the weak ones at each evaluation (every {opts.eval_every} steps)")
    base = TrainConfig(data=DataConfig(dataset=dataset, validation_stride=10, test_limit=1000),
                       tracking=TrackingConfig(wandb=opts.wandb, media_every=opts.steps),
                       ray=RayConfig(num_workers=1, max_failures=1), out=str(search_dir), batch_size=opts.batch_size,
                       steps=opts.steps, eval_every=opts.eval_every, eval_batch_size=500, quiet=True)
    best = run_search(SearchConfig(base=base, space="mnist-demo", trials=opts.trials, max_concurrent=opts.concurrent,
                                   algorithm="optuna", verbose=opts.verbose))
    p.note(f"best trial {best['trial_id']}: validation NLL bound {best['nll_bound']:.2f} nats "
           f"({best['bits_per_dim']:.4f} bits/dim), {best['checkpoint']}")
    return best


def evaluate_best(p: Progress, best: dict[str, Any], dataset: str) -> dict[str, float]:
    """Stage 4: the best checkpoint's bound on the test split, read through the product's own data path."""
    from . import checkpoint
    from .data.config import DataConfig
    from .data.worker import load_worker_data
    from .train.evaluate import bound_sums, bounds_from_sums

    p.stage(4, "Evaluating the best checkpoint on the MNIST test set (binarised, 10,000 images)")
    model, _ = checkpoint.load_model(best["checkpoint"])
    test = load_worker_data(DataConfig(dataset=dataset)).eval  # from the prepared shards, binarised once
    bound = bounds_from_sums(bound_sums(model, test, batch_size=1000))
    p.note(f"test NLL bound {bound['nll_bound']:.2f} nats per image "
           f"(recon {bound['recon']:.2f} + KL {bound['kl']:.2f})")
    return bound


def serve_and_fetch(p: Progress, opts: DemoConfig, best: dict[str, Any], out: Path) -> tuple[str, dict[str, Any]]:
    """Stage 5: the best checkpoint served; a sample grid and a drawing fetched over HTTP into `out`."""
    import requests

    from .serve.config import MODEL_HEADER, SHIPPED, ServeConfig, ServeSettings, shipped_models
    from .serve.launch import deploy

    shipped = shipped_models()
    p.stage(5, "Serving the best checkpoint with Ray Serve" + (f" beside the {len(shipped)} shipped models"
                                                                 if shipped else "") +
            " and asking it for pictures over HTTP")
    url = deploy(ServeConfig(best=best["best_record"], models=SHIPPED if shipped else "", port=opts.port,
                             settings=ServeSettings(max_batch_size=16, batch_wait_timeout_s=0.01)))
    fetches = [({}, "samples.png", "drawing.gif")]
    if SHOWCASE in shipped:
        fetches.append(({MODEL_HEADER: SHOWCASE}, f"samples-{SHOWCASE}.png", None))
    for chosen, samples, drawing in fetches:
        grid = requests.post(f"{url}/sample", json={"n": 64, "seed": 0}, headers={"Accept": "image/png", **chosen},
                             timeout=120)
        grid.raise_for_status()
        (out / samples).write_bytes(grid.content)
        p.note(f"{url}/sample {' '.join(f'({k}: {v})' for k, v in chosen.items())} -> {out / samples}")
        if drawing:
            gif = requests.post(f"{url}/animate", json={"n": 16, "seed": 0}, timeout=120)
            gif.raise_for_status()
            (out / drawing).write_bytes(gif.content)
            p.note(f"{url}/animate -> {out / drawing}")
    info = requests.get(f"{url}/info", timeout=30).json()
    p.note(f"{url}/ offers {', '.join(info['models'])}: pick one on the page")
    return url, info


def demo_command(opts: DemoConfig) -> None:
    """`draw-service demo` (`make demo`): the summary is printed as the demo ends."""
    run(opts)
