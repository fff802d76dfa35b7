"""Serving under load: the HTTP service on a local Ray cluster at concurrency 1, 8 and 32, batched
(`@serve.batch`) and not: images/s and p50/p99 latency."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from draw_service.model import DRAW, DRAWConfig

from .common import MNIST_SHAPE, PAPER, say
from .load_generator import run_load


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
        state = checkpoint.build_state(DRAW(DRAWConfig(**PAPER), MNIST_SHAPE), None, 0, {})
        ckpt = checkpoint.save(state, os.path.join(tmp, "c"))
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        port = free_port_pairs(1)[0]
        for label, batch in (("batched_max_32", 32), ("unbatched_max_1", 1)):
            url = deploy(ServeConfig(checkpoint=ckpt, port=port, max_ongoing_requests=64,
                                      settings=ServeSettings(max_batch_size=batch, batch_wait_timeout_s=0.005)))
            result[label] = {}
            for c in (1, 8, 32):
                result[label][f"concurrency_{c}"] = run_load(url, c, requests_per_level, n)
                say(f"  {label} concurrency {c}: {result[label][f'concurrency_{c}']}")
        serve.shutdown()
        ray.shutdown()
    return result


