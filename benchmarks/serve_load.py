"""Serving under load: the HTTP service on a local Ray cluster at concurrency 1, 8 and 32, batched
(`@serve.batch`) and not, answering JSON floats or 8-bit bytes, behind Serve's default Python proxy and
behind Ray's opt-in HAProxy ingress: images/s and p50/p99 latency, against what the model decodes in
this process at the batch size concurrency 32 fills."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from draw_service.model import DRAW, DRAWConfig
from draw_service.ray_cluster import SERVE_HIGH_THROUGHPUT_ENV

from .common import MNIST_SHAPE, PAPER, best_time, say
from .load_generator import run_load


def in_process_images_per_s(model: DRAW, batch: int, threads: int, repeats: int = 5) -> float:
    """What the replica's model decodes per second at `batch` images per pass, on `threads` torch threads."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        eps = torch.randn(model.config.T, batch, model.config.z_size)
        model.decode(eps)
        return round(batch / best_time(lambda: model.decode(eps), repeats, inner=2), 1)
    finally:
        torch.set_num_threads(saved)


def bench_serve(requests_per_level: int, n: int) -> dict[str, Any]:
    import ray
    from ray import serve

    from devtools.s3_server import free_port_pairs
    from draw_service import checkpoint
    from draw_service.serve.config import ServeConfig, ServeSettings
    from draw_service.serve.launch import deploy

    result: dict[str, Any] = {"config": {**PAPER, "images_per_request": n, "requests_per_level": requests_per_level}}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = DRAW(DRAWConfig(**PAPER), MNIST_SHAPE).eval()
        ckpt = checkpoint.save(checkpoint.build_state(model, None, 0, {}), os.path.join(tmp, "c"))
        # The yardstick: the model decoding a full batch of c32 x n images in this process.
        result["in_process_images_per_s"] = {
            f"batch_{32 * n}_threads_{t}": in_process_images_per_s(model, 32 * n, t) for t in (1, os.cpu_count())}
        say(f"  in process: {result['in_process_images_per_s']}")
        # Two clusters in turn: Serve's default Python proxy, then Ray's opt-in HAProxy ingress
        # (draw_service.ray_cluster.SERVE_HIGH_THROUGHPUT_ENV), which Serve reads when it starts.
        variants = {"": [("batched_max_32", 32, 1.0, ("json", "u8")), ("batched_max_32_cpus_2", 32, 2.0, ("u8",)),
                         ("unbatched_max_1", 1, 1.0, ("json",))],
                    "haproxy_": [("batched_max_32", 32, 1.0, ("json", "u8")), ("batched_max_32_cpus_2", 32, 2.0,
                                                                               ("u8",))]}
        yardstick = result["in_process_images_per_s"]
        result["served_vs_in_process_c32"] = {}
        for ingress, runs in variants.items():
            env = SERVE_HIGH_THROUGHPUT_ENV if ingress else {}
            os.environ.update(env)
            try:
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
                port = free_port_pairs(1)[0]
                for label, batch, cpus, formats in runs:
                    url = deploy(ServeConfig(checkpoint=ckpt, port=port, max_ongoing_requests=64, cpus_per_replica=cpus,
                                             settings=ServeSettings(max_batch_size=batch, batch_wait_timeout_s=0.005)))
                    for fmt in formats:
                        key = f"{ingress}{label}_{fmt}"
                        result[key] = {}
                        for c in (1, 8, 32):
                            result[key][f"concurrency_{c}"] = run_load(url, c, requests_per_level, n, fmt)
                            say(f"  {key} concurrency {c}: {result[key][f'concurrency_{c}']}")
                        if batch > 1:
                            # against the model decoding the same batch in this process on as many threads
                            # as the replica has CPUs (a replica runs that many torch threads)
                            same = yardstick[f"batch_{32 * n}_threads_{min(int(cpus), os.cpu_count())}"]
                            result["served_vs_in_process_c32"][key] = round(
                                result[key]["concurrency_32"]["images_per_s"] / same, 2)
                serve.shutdown()
                ray.shutdown()
            finally:
                for k in env:
                    os.environ.pop(k, None)
    return result
