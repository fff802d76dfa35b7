"""An HTTP load generator: `concurrency` clients posting /sample requests of `n` images, as fast as answered.

Asyncio clients on aiohttp (its HTTP parser is C) rather than threads or httpx: on a 2-core machine the
generator shares the CPUs with the proxy and the replica, and every millisecond it spends per request is
a millisecond the service does not get.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Any


async def _load(url: str, concurrency: int, requests_total: int, body: dict[str, Any]) -> tuple[list[float], float]:
    import aiohttp

    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if os.environ.get("DRAW_SERVE_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['DRAW_SERVE_TOKEN']}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector, timeout=timeout) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        latencies: list[float] = []

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t = time.perf_counter()
                async with client.post("/sample", data=json.dumps({**body, "seed": i})) as r:
                    r.raise_for_status()
                    await r.read()
                latencies.append(time.perf_counter() - t)

        for i in range(concurrency):  # warm up: every connection open
            queue.put_nowait(i)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        latencies.clear()
        for i in range(requests_total):
            queue.put_nowait(i)
        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - t


def run_load(url: str, concurrency: int, requests_total: int, n: int, fmt: str = "json") -> dict[str, Any]:
    latencies, wall = asyncio.run(_load(url, concurrency, requests_total, {"n": n, "format": fmt}))
    q = statistics.quantiles(sorted(latencies), n=100)
    return {"images_per_s": round(requests_total * n / wall, 1), "p50_ms": round(q[49] * 1000, 1),
            "p99_ms": round(q[98] * 1000, 1)}
