"""Start the HTTP service on a Ray cluster (the local one by default) from Python or the CLI."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from .config import ServeConfig

log = logging.getLogger(__name__)


def deploy(opts: ServeConfig) -> str:
    """Deploy (or update) the app and return its base URL; returns once the replicas are ready."""
    from ray import serve

    from ..ray_cluster import connect
    from .app import DRAWService

    if bool(opts.checkpoint) == bool(opts.best):
        raise ValueError("give exactly one of --checkpoint or --best")
    connect()
    serve.start(http_options={"host": opts.host, "port": opts.port})
    scaling = ({"autoscaling_config": {"min_replicas": opts.min_replicas, "max_replicas": opts.max_replicas,
                                       "target_ongoing_requests": opts.target_ongoing_requests}}
               if opts.max_replicas else {"num_replicas": opts.replicas})
    app = DRAWService.options(
        max_ongoing_requests=opts.max_ongoing_requests,
        ray_actor_options={"num_cpus": opts.cpus_per_replica, "num_gpus": opts.gpus_per_replica},
        user_config=opts.settings.to_dict(), **scaling,
    ).bind(checkpoint_uri=opts.checkpoint, best=opts.best, device="cuda" if opts.gpus_per_replica else "auto")
    serve.run(app, name=opts.app_name, route_prefix="/")
    url = f"http://{opts.host}:{opts.port}"
    log.info("serving at %s (docs at %s/docs)", url, url)
    return url


def shutdown(app_name: str = "draw") -> None:
    from ray import serve

    serve.delete(app_name)


def serve_command(opts: ServeConfig) -> dict[str, Any] | None:
    """`draw-service serve`: deploy, print where, and (unless detached) keep serving until Ctrl-C."""
    import json

    url = deploy(opts)
    answer = {"url": url, "docs": f"{url}/docs"}
    if opts.detach:
        return answer
    print(json.dumps(answer), flush=True)
    print("serving; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shutdown(opts.app_name)
    return None
