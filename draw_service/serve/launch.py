"""Start the HTTP service on a Ray cluster (the local one by default) from Python or the CLI."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from .config import ServeConfig

log = logging.getLogger(__name__)


def _serving_port() -> tuple[str, int] | None:
    """(host, port) of this cluster's running Serve, or None when Serve is not running here."""
    from ray.serve.context import _get_global_client

    try:
        client = _get_global_client(raise_if_no_controller_running=False)
    except Exception:  # no controller, or one that went away
        return None
    if client is None:
        return None
    return client.http_config.host, client.http_config.port


def _check_port(host: str, port: int) -> None:
    """Refuse a port another server already answers on: two Serve instances on one port split requests
    between two models while each reports success."""
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as err:
            raise ValueError(f"port {port} on {host} is already in use ({err.strerror}); stop what serves there "
                             f"or choose another --port") from None


def preflight(opts: ServeConfig) -> dict[str, str]:
    """What a deployment would otherwise fail on 3 times with 200 lines of Ray traceback: the model names,
    every checkpoint (or best record) and its storage. Returns each model's checkpoint URI by name."""
    from .. import checkpoint
    from .config import model_uris

    _, uris, _ = model_uris(opts.checkpoint, opts.best, opts.models)
    for uri in uris.values():
        checkpoint.model_from_state(checkpoint.load(uri), uri)
    return uris


def deploy(opts: ServeConfig) -> str:
    """Deploy (or update) the app and return the URL Serve listens on; returns once the replicas are ready."""
    from ray import serve

    from ..ray_cluster import connect
    from .app import DRAWService

    preflight(opts)
    connect()
    running = _serving_port()
    if running is None:
        _check_port(opts.host, opts.port)
        serve.start(proxy_location=opts.proxy_location, http_options={"host": opts.host, "port": opts.port})
    elif running[1] != opts.port:
        raise ValueError(f"port {opts.port} was asked for, but Serve already runs on this Ray cluster at port "
                         f"{running[1]}; deploy there (--port {running[1]}) or shut it down first (`serve shutdown`)")
    scaling = ({"autoscaling_config": {"min_replicas": opts.min_replicas, "max_replicas": opts.max_replicas,
                                       "target_ongoing_requests": opts.target_ongoing_requests,
                                       "upscale_delay_s": opts.upscale_delay_s,
                                       "downscale_delay_s": opts.downscale_delay_s}}
               if opts.max_replicas else {"num_replicas": opts.replicas})
    app = DRAWService.options(
        max_ongoing_requests=opts.max_ongoing_requests,
        ray_actor_options={"num_cpus": opts.cpus_per_replica, "num_gpus": opts.gpus_per_replica,
                           "resources": opts.extra_resources()},
        user_config=opts.settings.to_dict(), **scaling,
    ).bind(checkpoint_uri=opts.checkpoint, best=opts.best, models=opts.models,
           device="cuda" if opts.gpus_per_replica else "auto", precision=opts.precision)
    serve.run(app, name=opts.app_name, route_prefix="/")
    host, port = _serving_port() or (opts.host, opts.port)  # what Serve actually bound
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
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
