"""`make bench`: speed figures as JSON on stdout (progress on stderr).

Sections (all by default, or pick with --only):
  model  training images/s at the paper's MNIST configuration (T=64, 256/256 LSTMs, z=100, read 2,
         write 5, batch 100), with and without attention: the straightforward reference model, the
         fused model, and the fused model compiled 8 drawing steps per graph; sampling images/s; the
         ratios (from the best and from the median of the interleaved repeats).
  ray    a 1-worker Ray Train run against the plain local loop at the same configuration (the Ray
         overhead), the share of step time spent waiting for data from S3 (a local SeaweedFS), and
         reading a worker's shards directly against Ray Data.
  serve  a load generator at concurrency 1, 8 and 32 against the HTTP service, with batching and with
         max_batch_size=1: images/s and p50/p99 latency.
Timings are the best of several repeats (this kind of machine is a shared VM; the best is the least
disturbed), taken side by side in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

import torch

from .model import DRAW, DRAWConfig
from .model.reference import ReferenceDRAW, fast_state_dict

PAPER = dict(T=64, enc_size=256, dec_size=256, z_size=100, read_n=2, write_n=5)
BATCH = 100


def say(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def _best_time(fn, repeats: int, inner: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def _train_step(model, x, eps, device: str):
    """One forward and backward pass of `model` (the reference returns the loss terms as a tuple)."""
    def run():
        out = model(x, eps)
        loss = out[0] + out[1] if isinstance(out, tuple) else out.loss
        loss.mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
    return run


def bench_model(repeats: int, compile_step: bool, device: str) -> dict[str, Any]:
    out = {}
    for attention in (True, False):
        cfg = DRAWConfig(attention=attention, **PAPER)
        torch.manual_seed(0)
        ref = ReferenceDRAW(cfg).to(device)
        fast = DRAW(cfg).to(device)
        fast.load_state_dict(fast_state_dict(ref))
        x = torch.bernoulli(torch.rand(BATCH, 1, 28, 28, device=device))
        eps = torch.randn(cfg.T, BATCH, cfg.z_size, device=device)

        runs = {"reference": _train_step(ref, x, eps, device), "fused": _train_step(fast, x, eps, device)}
        if compile_step:
            compiled = DRAW(cfg).to(device)
            compiled.load_state_dict(fast.state_dict())
            compiled.compile_step()
            runs["fused+compiled"] = _train_step(compiled, x, eps, device)
            t = time.perf_counter()
            runs["fused+compiled"]()
            say(f"  compiled the step in {time.perf_counter() - t:.0f} s")
        for run in runs.values():
            run()  # warm up
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):  # interleaved, so a noisy moment hurts every variant alike
            for name, run in runs.items():
                samples[name].append(_best_time(run, 1, inner=2))
        times = {name: min(ts) for name, ts in samples.items()}
        medians = {name: statistics.median(ts) for name, ts in samples.items()}
        with torch.inference_mode():
            decode_eps = torch.randn(cfg.T, BATCH, cfg.z_size, device=device)
            decoders = {"fused": fast.decode}
            if compile_step:
                decoders["fused+compiled"] = compiled.decode
            if device == "cuda":  # what a Serve replica on a GPU does: the decode replayed as a CUDA graph
                from .model.graphed import GraphedDecoder

                decoders["cuda_graph"] = GraphedDecoder(fast)
            sample_s = {}
            for name, decoder in decoders.items():
                def decode(decoder=decoder, decode_eps=decode_eps):
                    decoder(decode_eps)
                    if device == "cuda":
                        torch.cuda.synchronize()

                decode()  # warm up (and compile)
                sample_s[name] = _best_time(decode, repeats, inner=3)
        key = "attention" if attention else "no_attention"
        train = {name: round(BATCH / t, 1) for name, t in times.items()}
        sample = {name: round(BATCH / t, 1) for name, t in sample_s.items()}
        out[key] = {
            "train_images_per_s": train,
            "speedup_vs_reference": {name: round(v / train["reference"], 2) for name, v in train.items()},
            # The median over the interleaved repeats: steadier than the best on a shared VM.
            "speedup_vs_reference_median": {name: round(medians["reference"] / t, 2) for name, t in medians.items()},
            "sample_images_per_s": sample,
            # The fastest generation against the fastest training step, per image.
            "sampling_vs_training_per_image": round(max(sample.values()) / max(train.values()), 1),
        }
        say(f"  {key}: {json.dumps(out[key])}")
    result = {"config": {**PAPER, "batch_size": BATCH, "device": device}, **out}
    if device == "cuda":
        result["gpu_scaling"] = bench_gpu_scaling(repeats, compile_step)
    return result


def bench_gpu_scaling(repeats: int, compile_step: bool) -> dict[str, Any]:
    """The GPU path users switch on, as full training steps (forward, backward, clipping, Adam) of the
    attention model: batch size x precision (bf16 autocast) x torch.compile x CUDA graph of the step."""
    from .train.graphed import EagerStep, GraphedStep

    variants = [(100, "fp32", c, g) for c in (False, True) for g in (False, True)]
    variants += [(100, "bf16", True, True)]
    variants += [(1000, "fp32", c, g) for c in (False, True) for g in (False, True)] + [(1000, "bf16", True, True)]
    variants += [(4000, "fp32", False, False), (4000, "fp32", True, True), (4000, "bf16", True, True)]
    out: dict[str, Any] = {}
    cfg = DRAWConfig(attention=True, **PAPER)
    for batch, precision, compiled, graphs in variants:
        if compiled and not compile_step:
            continue
        name = f"batch_{batch}_{precision}" + ("_compiled" if compiled else "") + ("_cuda_graph" if graphs else "")
        try:
            torch._dynamo.reset()  # each variant compiles afresh (and never hits the recompile limit)
            torch.manual_seed(0)
            model = DRAW(cfg).cuda()
            if compiled:
                model.compile_step()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            step = (GraphedStep if graphs else EagerStep)(model, opt, 10.0, precision == "bf16")
            x = torch.bernoulli(torch.rand(batch, 1, 28, 28, device="cuda"))
            eps = torch.randn(cfg.T, batch, cfg.z_size, device="cuda")

            def run(step=step, x=x, eps=eps):
                step(x, eps)
                torch.cuda.synchronize()
            run()
            run()
            out[name] = round(batch / _best_time(run, repeats, inner=5), 1)
        except Exception as e:  # a variant that fails is reported, not fatal to the whole bench
            out[name] = f"failed: {type(e).__name__}: {str(e)[:300]}"
        say(f"  {name}: {out[name]}")
    return out


def bench_ray(steps: int) -> dict[str, Any]:
    import ray

    from .data import shards
    from .data.config import DataConfig
    from .seaweed import SeaweedS3
    from .tracking import TrackingConfig
    from .train.config import TrainConfig
    from .train.distributed import RayRun, fit
    from .train.loop import train_loop
    from .train.session import LocalSession

    result: dict[str, Any] = {}
    with SeaweedS3(bucket="bench") as s3, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(s3.env)
        say("  preparing MNIST into the local S3 server")
        shards.prepare_source("mnist", "s3://bench/mnist", progress=False)
        cfg = TrainConfig(model=DRAWConfig(**PAPER), data=DataConfig(dataset="s3://bench/mnist", test_limit=100),
                          tracking=TrackingConfig(wandb=False), batch_size=BATCH, steps=steps, eval_every=steps,
                          progress=False)
        # A worker's training images from S3: its own shards read directly, or streamed by Ray Data
        # (one worker reading the whole training split, so both paths move the same bytes).
        t = time.perf_counter()
        part = shards.load_worker_data(DataConfig(dataset="s3://bench/mnist"), 0, 1)
        direct = time.perf_counter() - t
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        from .storage import resolve

        loc = resolve("s3://bench/mnist/train")
        t = time.perf_counter()
        ds = ray.data.read_parquet(loc.path, filesystem=loc.fs).select_columns(["image", "index"])
        n = sum(len(b["index"]) for b in ds.iter_batches(batch_size=5000, batch_format="numpy"))
        via_ray_data = time.perf_counter() - t
        result["worker_data_read"] = {
            "images": len(part.train), "per_rank_shards_s": round(direct, 2),
            "ray_data_s": round(via_ray_data, 2), "ray_data_images": n,
            "kept": "per-rank shards" if direct <= via_ray_data else "ray data"}
        say(f"  worker data read: {result['worker_data_read']}")

        say(f"  local loop, {steps} steps")
        local = train_loop(cfg.to_dict(), LocalSession(os.path.join(tmp, "local"), "cpu", keep=1))
        say(f"  Ray Train, 1 worker, {steps} steps")
        t = time.perf_counter()
        # One worker given every core, as the local loop has (Ray sets a worker's threads to its CPUs).
        remote = fit(cfg, RayRun(num_workers=1, cpus_per_worker=os.cpu_count(), storage="s3://bench/runs",
                                 name="overhead", max_failures=0))
        wall = time.perf_counter() - t
        ray.shutdown()
    result.update({
        "config": {**PAPER, "batch_size": BATCH, "steps": steps},
        "local_images_per_s": round(local["images_per_s"], 1),
        "ray_1_worker_images_per_s": round(remote["images_per_s"], 1),
        "ray_overhead_ratio": round(local["images_per_s"] / remote["images_per_s"], 3),
        "ray_run_wall_s": round(wall, 1),
        "data_wait_share_s3": round(remote["data_wait_share"], 4),
        "data_load_from_s3_s": round(remote["data_load_s"], 2),
    })
    return result


def _load(url: str, concurrency: int, requests_total: int, n: int) -> dict[str, Any]:
    import concurrent.futures as cf

    import requests

    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))

    def one(i: int) -> float:
        t = time.perf_counter()
        r = session.post(f"{url}/sample", json={"n": n, "seed": i})
        r.raise_for_status()
        return time.perf_counter() - t

    with cf.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm up
        t = time.perf_counter()
        latencies = sorted(pool.map(one, range(requests_total)))
        wall = time.perf_counter() - t
    q = statistics.quantiles(latencies, n=100)
    return {"images_per_s": round(requests_total * n / wall, 1), "p50_ms": round(q[49] * 1000, 1),
            "p99_ms": round(q[98] * 1000, 1)}


def bench_serve(requests_per_level: int, n: int) -> dict[str, Any]:
    import ray
    from ray import serve

    from . import checkpoint
    from .seaweed import free_port_pairs
    from .serve.launch import ServeOptions, deploy
    from .serve.schema import ServeSettings

    result: dict[str, Any] = {"config": {**PAPER, "images_per_request": n, "requests_per_level": requests_per_level}}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ckpt = checkpoint.save(checkpoint.build_state(DRAW(DRAWConfig(**PAPER)), None, 0, {}), os.path.join(tmp, "c"))
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        port = free_port_pairs(1)[0]
        for label, batch in (("batched_max_32", 32), ("unbatched_max_1", 1)):
            url = deploy(ServeOptions(checkpoint=ckpt, port=port, max_ongoing_requests=64,
                                      settings=ServeSettings(max_batch_size=batch, batch_wait_timeout_s=0.005)))
            result[label] = {}
            for c in (1, 8, 32):
                result[label][f"concurrency_{c}"] = _load(url, c, requests_per_level, n)
                say(f"  {label} concurrency {c}: {result[label][f'concurrency_{c}']}")
        serve.shutdown()
        ray.shutdown()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m draw_service.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=["model", "ray", "serve"], default=["model", "ray", "serve"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip the compiled model (saves ~2 min of compiling)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ray-steps", type=int, default=20)
    p.add_argument("--serve-requests", type=int, default=96)
    p.add_argument("--serve-n", type=int, default=4, help="images per request")
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
        report["model"] = bench_model(a.repeats, not a.no_compile, a.device)
    if "ray" in a.only:
        say("ray: Train overhead and data loading")
        report["ray"] = bench_ray(a.ray_steps)
    if "serve" in a.only:
        say("serve: HTTP load")
        report["serve"] = bench_serve(a.serve_requests, a.serve_n)
    report["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2), file=json_out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
