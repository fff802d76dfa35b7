"""Starting Ray, or joining the cluster this process belongs to: the one place that calls `ray.init`."""

from __future__ import annotations

import os


def connect(num_cpus: int | None = None) -> None:
    """Attach to the cluster in RAY_ADDRESS (`auto` finds one started on this machine), or start a local one."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(address="local", num_cpus=num_cpus)
