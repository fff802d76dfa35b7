"""`draw-service`: argument parsing for every entry point, nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .model import DRAWConfig


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 32x32, got {text!r}") from None


def add_data_args(p: argparse.ArgumentParser, default_dataset: str | None = "mnist") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default_dataset,
                   help="mnist, fashion_mnist, svhn, cifar10, a .npz file, an image folder, or a prepared dataset "
                        "URI (local or s3://); default %(default)s")
    g.add_argument("--binarize", action=argparse.BooleanOptionalAction, default=None,
                   help="binarise pixels (default: yes for mnist as in the paper, no otherwise)")
    g.add_argument("--image-size", type=_size, default=None, help="HxW to resize an image folder to")
    g.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    g.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images")


def add_model_args(p: argparse.ArgumentParser) -> None:
    d = DRAWConfig()
    g = p.add_argument_group("model (defaults: the paper's MNIST model with attention)")
    g.add_argument("--T", type=int, default=d.T, help="drawing steps (default %(default)s)")
    g.add_argument("--enc-size", type=int, default=d.enc_size, help="encoder LSTM units (default %(default)s)")
    g.add_argument("--dec-size", type=int, default=d.dec_size, help="decoder LSTM units (default %(default)s)")
    g.add_argument("--z-size", type=int, default=d.z_size, help="latent size per step (default %(default)s)")
    g.add_argument("--attention", action=argparse.BooleanOptionalAction, default=d.attention,
                   help="Gaussian attention read/write (default: on)")
    g.add_argument("--read-n", type=int, default=d.read_n, help="read patch N×N (default %(default)s)")
    g.add_argument("--write-n", type=int, default=d.write_n, help="write patch N×N (default %(default)s)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=100, help="global batch size (default %(default)s)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default %(default)s)")
    g.add_argument("--lr-scaling", choices=["none", "linear", "sqrt"], default="none",
                   help="scale the learning rate by batch-size/100 for large batches")
    g.add_argument("--grad-clip", type=float, default=10.0, help="max gradient norm, 0 = off (default %(default)s)")
    g.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides --epochs)")
    g.add_argument("--epochs", type=float, default=1.0, help="epochs when --steps is not given (default %(default)s)")
    g.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop after this many minutes of training, with a final evaluation and checkpoint")
    g.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: an epoch)")
    g.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default: each eval)")
    g.add_argument("--keep-checkpoints", type=int, default=3)
    g.add_argument("--eval-batch-size", type=int, default=500)
    g.add_argument("--iw-samples", type=int, default=0, help="importance samples for a final IWAE bound (0 = skip)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    g.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 autocast (GPUs)")
    g.add_argument("--compile", action="store_true", help="torch.compile the drawing steps")
    g.add_argument("--compile-steps", type=int, default=8, metavar="K",
                   help="with --compile: drawing steps per compiled graph (default 8; 1 compiles fastest)")
    g.add_argument("--cuda-graphs", action="store_true",
                   help="capture the whole training step as one CUDA graph (one GPU; the fastest at small batches)")
    t = p.add_argument_group("tracking")
    t.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=True,
                   help="log to Weights & Biases, offline unless WANDB_MODE says otherwise (default: on)")
    t.add_argument("--wandb-project", default="draw-service")
    t.add_argument("--media-every", type=int, default=None, help="steps between sample pictures (default: each eval)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


def train_config_from_args(a: argparse.Namespace, out: str):
    from .data.config import DataConfig
    from .tracking import TrackingConfig
    from .train.config import TrainConfig

    return TrainConfig(
        model=DRAWConfig(T=a.T, enc_size=a.enc_size, dec_size=a.dec_size, z_size=a.z_size, attention=a.attention,
                         read_n=a.read_n, write_n=a.write_n),
        data=DataConfig(dataset=a.dataset, binarize=a.binarize, image_size=a.image_size,
                        train_limit=a.train_limit, test_limit=a.test_limit),
        tracking=TrackingConfig(wandb=a.wandb, project=a.wandb_project, media_every=a.media_every),
        out=out, batch_size=a.batch_size, lr=a.lr, lr_scaling=a.lr_scaling, grad_clip=a.grad_clip, steps=a.steps,
        epochs=a.epochs, time_limit_s=a.time_limit * 60 if a.time_limit else None, eval_every=a.eval_every,
        checkpoint_every=a.checkpoint_every,
        keep_checkpoints=a.keep_checkpoints, eval_batch_size=a.eval_batch_size, iw_samples=a.iw_samples,
        seed=a.seed, device=a.device, precision=a.precision, compile=a.compile, compile_steps=a.compile_steps,
        cuda_graphs=a.cuda_graphs,
        progress=not a.quiet,
    )


def add_ray_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray (RAY_ADDRESS picks a running cluster; otherwise a local one starts)")
    g.add_argument("--num-workers", type=int, default=0,
                   help="Ray Train workers (DDP); 0 trains in this process without Ray (default)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker; > 0 uses NCCL, else gloo")
    g.add_argument("--cpus-per-worker", type=float, default=1.0)
    g.add_argument("--max-failures", type=int, default=3, help="worker failures to recover from (default 3)")


def ray_run_from_args(a: argparse.Namespace, out: str):
    import posixpath

    from .train.distributed import RayRun

    loc_uri = out.rstrip("/")
    storage_uri, name = posixpath.dirname(loc_uri) or ".", posixpath.basename(loc_uri)
    return RayRun(num_workers=a.num_workers, use_gpu=a.gpus_per_worker > 0, gpus_per_worker=a.gpus_per_worker or 1.0,
                  cpus_per_worker=a.cpus_per_worker, storage=storage_uri, name=name, max_failures=a.max_failures)


def cmd_train(a: argparse.Namespace) -> None:
    cfg = train_config_from_args(a, a.out)
    cfg.validate()
    if a.num_workers > 0:
        from .train.distributed import fit

        result = fit(cfg, ray_run_from_args(a, a.out))
    else:
        from .train.loop import train_loop
        from .train.session import LocalSession

        session = LocalSession(cfg.out, cfg.device, resume=a.resume, keep=cfg.keep_checkpoints)
        result = train_loop(cfg.to_dict(), session)
    print(json.dumps(result, indent=2))


def cmd_prepare(a: argparse.Namespace) -> None:
    from .data import shards

    manifest = shards.prepare_source(a.dataset, a.dest, image_size=a.image_size, shard_size=a.shard_size,
                                     train_limit=a.train_limit, test_limit=a.test_limit, force=a.force,
                                     progress=not a.quiet)
    print(shards.describe(manifest, a.dest), file=sys.stderr)
    print(json.dumps({"dataset": a.dest, "name": manifest["name"], "image_shape": manifest["image_shape"],
                      **{f"{k}_count": v["count"] for k, v in manifest["splits"].items()}}))


def cmd_evaluate(a: argparse.Namespace) -> None:
    import torch
    from tqdm import tqdm

    from . import checkpoint
    from .data.config import DataConfig
    from .data.worker import load_worker_data
    from .device import pick_device
    from .train.evaluate import bound_sums, bounds_from_sums

    device = pick_device(a.device)
    model, state = checkpoint.load_model(a.checkpoint, device)
    data_cfg = DataConfig(**state["train_config"]["data"])
    if a.dataset:
        data_cfg.dataset = a.dataset
    if a.binarize is not None:
        data_cfg.binarize = a.binarize
    data_cfg.test_limit = a.limit
    data_cfg.train_limit = a.limit if a.split == "train" else None
    if a.split == "test":
        data_cfg.validation_stride = 0
    elif a.split == "validation":
        data_cfg.validation_stride = data_cfg.validation_stride or 10
    data = load_worker_data(data_cfg)
    if data.image_shape != model.config.image_shape:
        raise ValueError(f"{data.name} images are {data.image_shape} (C, H, W) but the model draws "
                         f"{model.config.image_shape}")
    images = data.eval
    if a.split == "train":
        from .data.batches import binarize_fixed

        images = binarize_fixed(data.train) if data.binarize else data.train
    with tqdm(total=len(images), desc=f"evaluate {a.split}", unit="img",
              disable=a.quiet, mininterval=2) as bar:
        torch.manual_seed(a.seed)
        sums = bound_sums(model, images, a.batch_size, iw_samples=a.iw_samples, seed=a.seed, device=device,
                          progress=bar)
    result = {"checkpoint": a.checkpoint, "dataset": data.name, "split": a.split, "binarized": data.binarize,
              "step": state["step"], **bounds_from_sums(sums)}
    if a.iw_samples:
        result["iw_samples"] = a.iw_samples
    print(json.dumps(result, indent=2))


def cmd_sample(a: argparse.Namespace) -> None:
    from pathlib import Path

    import torch

    from . import checkpoint
    from .device import pick_device
    from .viz import drawing_frames, gif_bytes, grid_image

    if a.n < 1:
        raise ValueError(f"-n must be >= 1, got {a.n}")
    model, _ = checkpoint.load_model(a.checkpoint, pick_device(a.device))
    g = torch.Generator(model.dec_proj.weight.device).manual_seed(a.seed)
    images, record = model.sample(a.n, generator=g, temperature=a.temperature, record=a.gif is not None)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    grid_image(images).save(a.out)
    written = {"grid": a.out}
    if a.gif:
        Path(a.gif).parent.mkdir(parents=True, exist_ok=True)
        write_n = model.config.write_n if model.config.attention else None
        Path(a.gif).write_bytes(gif_bytes(drawing_frames(record, write_n)))
        written["gif"] = a.gif
    print(json.dumps(written))


def cmd_tune(a: argparse.Namespace) -> None:
    import posixpath

    from .data import shards
    from .tune.search import SearchConfig, run_search

    if a.prepare_from and not shards.is_prepared(a.dataset):
        print(f"{a.dataset} holds no prepared dataset: preparing {a.prepare_from} into it", file=sys.stderr)
        shards.prepare_source(a.prepare_from, a.dataset, train_limit=a.prepare_train_limit,
                              test_limit=a.prepare_test_limit, progress=not a.quiet)
    out = a.out.rstrip("/")
    base = train_config_from_args(a, out)
    base.data.validation_stride = a.validation_stride
    if base.steps is None:
        raise ValueError("a search needs --steps (training steps per trial)")
    cfg = SearchConfig(base=base, name=posixpath.basename(out), storage=posixpath.dirname(out) or ".",
                       space=a.space, num_trials=a.trials, workers_per_trial=a.workers_per_trial,
                       gpus_per_worker=a.gpus_per_worker, cpus_per_worker=a.cpus_per_worker,
                       max_concurrent=a.max_concurrent, time_budget_s=a.time_budget, algorithm=a.algorithm,
                       grace_reports=a.grace_reports, seed=a.seed)
    print(json.dumps(run_search(cfg), indent=2))


def cmd_serve(a: argparse.Namespace) -> None:
    import time

    from .serve.launch import ServeOptions, deploy, shutdown
    from .serve.schema import ServeSettings

    opts = ServeOptions(
        checkpoint=a.checkpoint, best=a.best, host=a.host, port=a.port, replicas=a.replicas,
        min_replicas=a.min_replicas, max_replicas=a.max_replicas, gpus_per_replica=a.gpus_per_replica,
        max_ongoing_requests=a.max_ongoing_requests,
        settings=ServeSettings(max_batch_size=a.max_batch_size, batch_wait_timeout_s=a.batch_wait_ms / 1000,
                               max_n=a.max_n))
    url = deploy(opts)
    print(json.dumps({"url": url, "docs": f"{url}/docs"}), flush=True)
    if a.detach:
        return
    print("serving; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shutdown(opts.app_name)


def cmd_demo(a: argparse.Namespace) -> None:
    from .demo import DemoOptions, run

    run(DemoOptions(out=a.out, trials=a.trials, steps=a.steps, eval_every=a.eval_every, port=a.port,
                    keep_serving=a.keep_serving, wandb=a.wandb))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="draw-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="convert a dataset into Parquet shards in storage (local or s3://)")
    p.add_argument("--dataset", required=True,
                   help="mnist, fashion_mnist, svhn, cifar10, a .npz file or an image folder")
    p.add_argument("--dest", required=True, help="where the shards go: a folder or s3://bucket/prefix")
    p.add_argument("--image-size", type=_size, default=None, help="HxW to resize an image folder to")
    p.add_argument("--shard-size", type=int, default=5000, help="images per shard (default %(default)s)")
    p.add_argument("--train-limit", type=int, default=None, help="keep only the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="keep only the first N test images")
    p.add_argument("--force", action="store_true", help="rewrite even when an intact copy is there")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train DRAW, in this process or on Ray Train with --num-workers")
    add_data_args(p)
    add_model_args(p)
    add_train_args(p)
    add_ray_args(p)
    p.add_argument("--out", default="runs/draw",
                   help="run folder or s3:// URI (default %(default)s); on Ray its last part is the run name, and "
                        "submitting the same --out again continues that run")
    p.add_argument("--resume", action="store_true", help="local runs: continue from the latest checkpoint in --out")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="search hyperparameters with Ray Tune (one Ray Train run per trial)")
    add_data_args(p)
    add_model_args(p)  # the search sets read_n, write_n, z_size, hidden sizes and T; the rest is the base
    add_train_args(p)
    g = p.add_argument_group("search")
    g.add_argument("--out", required=True, help="<storage>/<search name>, local or s3://; the same --out resumes")
    g.add_argument("--space", choices=["svhn", "mnist-demo", "smoke"], default="svhn",
                   help="svhn: centred on the paper's SVHN model; mnist-demo: small models for a CPU; "
                        "smoke: tiny, for a check")
    g.add_argument("--trials", type=int, default=16)
    g.add_argument("--workers-per-trial", type=int, default=1)
    g.add_argument("--gpus-per-worker", type=float, default=0.0)
    g.add_argument("--cpus-per-worker", type=float, default=1.0)
    g.add_argument("--max-concurrent", type=int, default=None, help="default: what the cluster's resources hold")
    g.add_argument("--time-budget", type=float, default=None, help="seconds for the whole search")
    g.add_argument("--algorithm", choices=["optuna", "random"], default="optuna")
    g.add_argument("--grace-reports", type=int, default=1, help="ASHA: evaluations every trial gets (default 1)")
    g.add_argument("--validation-stride", type=int, default=10,
                   help="every k-th training image is held out for the search's metric (default 10)")
    g.add_argument("--prepare-from", default=None,
                   help="if --dataset holds no prepared dataset, prepare this source (e.g. svhn) into it first")
    g.add_argument("--prepare-train-limit", type=int, default=None)
    g.add_argument("--prepare-test-limit", type=int, default=None)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("serve", help="serve batched sampling over HTTP with Ray Serve")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint URI (folder or file, local or s3://)")
    src.add_argument("--best", help="a search's best record (best.json, or the search folder)")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=None, help="turns on autoscaling up to this many replicas")
    p.add_argument("--gpus-per-replica", type=float, default=0.0)
    p.add_argument("--max-batch-size", type=int, default=32, help="requests decoded together (default 32)")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long a batch waits to fill (default 10)")
    p.add_argument("--max-ongoing-requests", type=int, default=64)
    p.add_argument("--max-n", type=int, default=64, help="images per request (default 64)")
    p.add_argument("--detach", action="store_true", help="return once deployed (on a running cluster)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="the whole pipeline on one machine: prepare, search, serve, pictures")
    p.add_argument("--out", default="demo-out", help="output folder (default %(default)s)")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--steps", type=int, default=1800, help="training steps per trial, at most")
    p.add_argument("--eval-every", type=int, default=300)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--keep-serving", action="store_true", help="keep the endpoint up until Ctrl-C")
    p.add_argument("--wandb", action="store_true", help="log the trials to W&B (offline files)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("evaluate", help="NLL bound (and IWAE bound) of a checkpoint on a dataset split")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or file, local or s3://")
    add_data_args(p, default_dataset=None)
    p.add_argument("--split", choices=["train", "validation", "test"], default="test",
                   help="validation: the images a search held out of the training split (default test)")
    p.add_argument("--iw-samples", type=int, default=0, help="k for the importance-weighted bound (0 = skip)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="a grid of samples and an animation of the drawing")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--out", default="samples.png", help="PNG grid (default %(default)s)")
    p.add_argument("--gif", default=None, help="also write the drawing animation here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .data.sources import DatasetError
    from .storage import StorageError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        args.func(args)
    except (DatasetError, StorageError, CheckpointError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"draw-service {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
