"""A scaling model of DDP for DRAW, on paper: all-reduce bytes per step against the measured step time.

    python -m benchmarks.scaling_model            # the README's table, as Markdown

Each step all-reduces every gradient: the model's parameter count in fp32. The time of an all-reduce of S
bytes over N GPUs is taken as NCCL's better of a ring, 2(N-1)·α + 2(N-1)/N · S/β, and a tree,
2·log2(N)·α + 2·S/β (what NCCL picks for small messages at scale), with α the latency of one hop and β
the bandwidth per GPU of the link it crosses. Efficiency assumes no overlap of the all-reduce with the
backward pass (DDP overlaps some): t_step / (t_step + t_allreduce), a lower bound. The step times are
the measured CUDA-graph steps on an H100 (docs/bench/h100-gpu-scaling.json).
"""

from __future__ import annotations

import math

from draw_service.model import DRAW, DRAWConfig

# Measured on one H100 (docs/bench/h100-gpu-scaling.json): images/s of the full graphed training step.
STEP_IMAGES_PER_S = {100: 6104.0, 1000: 29428.0}
# Networks, as (name, α seconds per hop, β bytes/s per GPU), inside a node and between nodes, GPUs per node.
#   NVLink+IB: 8-GPU H100 nodes, NVLink inside (~300 GB/s achieved), InfiniBand NDR 400 Gb/s per GPU between
#   25GbE: one GPU per node (cloud instances such as g5), 25 Gb/s Ethernet over TCP
NETWORKS = {
    "NVLink+IB": {"inside": (5e-6, 300e9), "between": (10e-6, 50e9), "per_node": 8},
    "25GbE": {"inside": (5e-6, 300e9), "between": (50e-6, 3.125e9), "per_node": 1},
}
GPUS = (2, 8, 32, 128)
BASE_LR = 1e-3  # the paper's Adam rate at batch 100; `--lr-scaling sqrt` scales it by sqrt(batch / 100)


def allreduce_s(size_bytes: float, n: int, alpha: float, beta: float) -> float:
    ring = 2 * (n - 1) * alpha + 2 * (n - 1) / n * size_bytes / beta
    tree = 2 * math.log2(n) * alpha + 2 * size_bytes / beta
    return min(ring, tree)


def table() -> str:
    params = sum(p.numel() for p in DRAW(DRAWConfig(), (1, 28, 28)).parameters())
    size = 4 * params
    lines = [f"Paper model: {params:,} parameters, {size / 1e6:.2f} MB of fp32 gradients all-reduced per step.", "",
             "| network | per-GPU batch | step (ms) | GPUs | global batch | all-reduce (ms) | efficiency | Adam lr, "
             "`--lr-scaling sqrt` |",
             "|---|---|---|---|---|---|---|---|"]
    for name, net in NETWORKS.items():
        for batch, ips in STEP_IMAGES_PER_S.items():
            step = batch / ips
            for n in GPUS:
                alpha, beta = net["inside"] if n <= net["per_node"] else net["between"]
                t = allreduce_s(size, n, alpha, beta)
                lr = BASE_LR * (n * batch / 100) ** 0.5
                lines.append(f"| {name} | {batch} | {1e3 * step:.1f} | {n} | {n * batch:,} | {1e3 * t:.2f} | "
                             f"{step / (step + t):.0%} | {lr:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
