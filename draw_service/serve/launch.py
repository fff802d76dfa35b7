"""Start the HTTP service on a Ray cluster (the local one by default) from Python or the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .schema import ServeSettings

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    checkpoint: str | None = None
    best: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1  # fixed replica count, unless max_replicas turns on autoscaling
    min_replicas: int = 1
    max_replicas: int | None = None
    target_ongoing_requests: int = 32
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    max_ongoing_requests: int = 64
    settings: ServeSettings = field(default_factory=ServeSettings)
    app_name: str = "draw"

    def validate(self) -> None:
        if bool(self.checkpoint) == bool(self.best):
            raise ValueError("give exactly one of --checkpoint or --best")
        if self.settings.max_batch_size > self.max_ongoing_requests:
            raise ValueError(f"max batch size {self.settings.max_batch_size} exceeds max ongoing requests "
                             f"{self.max_ongoing_requests}: a batch could never fill")


def deploy(opts: ServeOptions) -> str:
    """Deploy (or update) the app and return its base URL; returns once the replicas are ready."""
    from ray import serve

    from ..train.distributed import init_ray
    from .app import DRAWService

    opts.validate()
    init_ray()
    serve.start(http_options={"host": opts.host, "port": opts.port})
    scaling = ({"autoscaling_config": {"min_replicas": opts.min_replicas, "max_replicas": opts.max_replicas,
                                       "target_ongoing_requests": opts.target_ongoing_requests}}
               if opts.max_replicas else {"num_replicas": opts.replicas})
    app = DRAWService.options(
        max_ongoing_requests=opts.max_ongoing_requests,
        ray_actor_options={"num_cpus": opts.cpus_per_replica, "num_gpus": opts.gpus_per_replica},
        user_config=opts.settings.model_dump(), **scaling,
    ).bind(checkpoint_uri=opts.checkpoint, best=opts.best, device="cuda" if opts.gpus_per_replica else "auto")
    serve.run(app, name=opts.app_name, route_prefix="/")
    url = f"http://{opts.host}:{opts.port}"
    log.info("serving at %s (docs at %s/docs)", url, url)
    return url


def shutdown(app_name: str = "draw") -> None:
    from ray import serve

    serve.delete(app_name)
