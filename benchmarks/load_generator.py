"""An HTTP load generator: `concurrency` clients posting /sample requests of `n` images, as fast as answered."""

from __future__ import annotations

import statistics
import time
from typing import Any


def run_load(url: str, concurrency: int, requests_total: int, n: int) -> dict[str, Any]:
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


