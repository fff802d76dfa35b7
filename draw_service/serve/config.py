"""How the HTTP service is deployed (`ServeConfig`) and its runtime settings (`ServeSettings`, Serve's
user_config, changeable without restarting replicas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import Settings, option, section


def model_source(checkpoint: str | None, best: str | None) -> tuple[str, dict[str, Any]]:
    """(the checkpoint URI, the search's best record or {}) of a service given exactly one of them."""
    from .. import best as best_record

    if bool(checkpoint) == bool(best):
        raise ValueError("give exactly one of --checkpoint (a checkpoint URI) or --best (a search's best record)")
    if best:
        record = best_record.read(best)
        return record["checkpoint"], record
    return checkpoint, {}


def check_batch_fits(max_batch_size: int, max_ongoing_requests: int) -> None:
    """A replica holds at most max_ongoing_requests requests: a larger batch could never fill."""
    if max_batch_size > max_ongoing_requests:
        raise ValueError(f"max_batch_size {max_batch_size} exceeds max_ongoing_requests {max_ongoing_requests}: a "
                         f"batch could never fill; raise max_ongoing_requests or lower max_batch_size")


@dataclass(frozen=True)
class ServeSettings(Settings):
    component = "Serve user_config"

    max_batch_size: int = option(32, min=1, help="requests decoded together in one pass")
    batch_wait_timeout_s: float = option(0.01, min=0, max=10, help="how long a batch waits to fill, in seconds")
    max_n: int = option(64, min=1, max=1024, help="images per /sample request")
    max_n_animate: int = option(16, min=1, max=256, help="images per /animate request")
    max_n_score: int = option(64, min=1, max=1024, help="images per /score request")
    max_iw_samples: int = option(31, min=0, max=1000, help="importance samples per image a /score request may ask "
                                                           "for (a request encodes at most max_n_score x (1 + this) "
                                                           "images)")


@dataclass(frozen=True)
class ServeConfig(Settings):
    component = "serve"

    checkpoint: str | None = option(None, help="checkpoint URI (folder or file, local or s3://)")
    best: str | None = option(None, help="a search's best record (best.json, or the search's folder)")
    host: str = option("127.0.0.1", help="0.0.0.0 to listen on every interface")
    port: int = option(8000, min=1, max=65535, help="HTTP port")
    replicas: int = option(1, min=1, help="replicas, unless --max-replicas turns on autoscaling")
    min_replicas: int = option(1, min=0, help="autoscaling: the fewest replicas")
    max_replicas: int | None = option(None, min=1, help="turns on autoscaling up to this many replicas")
    target_ongoing_requests: int = option(32, min=1, help="autoscaling: ongoing requests per replica")
    # Ray Serve's own defaults: add replicas after 30 s of load, remove them after 10 minutes without.
    upscale_delay_s: float = option(30.0, min=0, metavar="SECONDS",
                                    help="autoscaling: how long the load must stay high before replicas are added")
    downscale_delay_s: float = option(600.0, min=0, metavar="SECONDS",
                                      help="autoscaling: how long the load must stay low before replicas go")
    gpus_per_replica: float = option(0.0, min=0, help="GPUs per replica")
    cpus_per_replica: float = option(1.0, above=0, cli=False, help="CPUs per replica")
    max_ongoing_requests: int = option(64, min=1, help="requests a replica holds at once")
    settings: ServeSettings = section(ServeSettings, title="runtime settings (Serve's user_config)")
    detach: bool = option(False, help="return once deployed (on a running cluster)")
    app_name: str = option("draw", cli=False, help="the Serve application's name")

    def check(self) -> None:
        check_batch_fits(self.settings.max_batch_size, self.max_ongoing_requests)
