"""The README's DDP scaling model: the all-reduce cost model and the table built from the real model."""

import pytest

from benchmarks.scaling_model import NETWORKS, allreduce_s, table
from draw_service.model import DRAW, DRAWConfig


def test_the_all_reduce_model_is_nccls_ring_or_tree_whichever_is_faster():
    alpha, beta = 10e-6, 50e9
    size = 4e6
    assert allreduce_s(size, 2, alpha, beta) == pytest.approx(2 * alpha + size / beta)  # a ring of two
    assert allreduce_s(size, 128, alpha, beta) <= 2 * 127 * alpha + 2 * 127 / 128 * size / beta
    assert allreduce_s(2 * size, 8, alpha, beta) > allreduce_s(size, 8, alpha, beta)
    slow, fast = NETWORKS["25GbE"]["between"], NETWORKS["NVLink+IB"]["between"]
    assert allreduce_s(size, 32, *slow) > allreduce_s(size, 32, *fast)


def test_the_table_is_built_from_the_papers_model():
    params = sum(p.numel() for p in DRAW(DRAWConfig(), (1, 28, 28)).parameters())
    text = table()
    assert f"{params:,} parameters" in text and f"{4 * params / 1e6:.2f} MB" in text
    rows = [line for line in text.splitlines() if line.startswith("| NVLink") or line.startswith("| 25GbE")]
    assert len(rows) == 2 * 2 * 4  # networks x per-GPU batches x GPU counts
    efficiencies = [int(r.split("|")[7].strip().rstrip("%")) for r in rows]
    assert all(0 < e <= 100 for e in efficiencies)
