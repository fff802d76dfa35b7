"""How the HTTP service is deployed (`ServeConfig`), the models it offers (`catalogue`), and its runtime
settings (`ServeSettings`, Serve's user_config, changeable without restarting replicas)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..device import PRECISIONS
from ..limits import MAX_ANIMATED, MAX_IMAGES
from ..settings import Settings, option, section

SHIPPED = "shipped"  # in --models: every model this repository ships under models/
SHIPPED_ROOT = Path(__file__).resolve().parents[2] / "models"
MODEL_HEADER = "serve_multiplexed_model_id"  # picks the model; Ray Serve routes on it to a replica that has it
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # what a request header can carry, unquoted


def model_source(checkpoint: str | None, best: str | None) -> tuple[str, dict[str, Any]]:
    """(the checkpoint URI, the search's best record or {}) of a service given exactly one of them."""
    from .. import best as best_record

    if bool(checkpoint) == bool(best):
        raise ValueError("give exactly one of --checkpoint (a checkpoint URI) or --best (a search's best record)")
    if best:
        record = best_record.read(best)
        return record["checkpoint"], record
    return checkpoint, {}


def shipped_models() -> dict[str, str]:
    """The repository's trained models, `models/<name>/`, by folder name."""
    if not SHIPPED_ROOT.is_dir():
        return {}
    return {p.name: str(p) for p in sorted(SHIPPED_ROOT.iterdir()) if (p / "checkpoint.pt").is_file()}


def default_name(checkpoint: str | None, best: str | None) -> str:
    """The --checkpoint or --best model's name among the service's models: `best` for a search's best
    record, else the checkpoint's folder (`models/mnist-attention` → mnist-attention, `runs/x/checkpoint_0000100`
    → x)."""
    if best:
        return "best"
    parts = [p for p in re.split(r"[/\\]+", str(checkpoint).rstrip("/")) if p]
    if parts and parts[-1].endswith(".pt"):
        parts.pop()
    if parts and re.fullmatch(r"checkpoint_\d+", parts[-1]):
        parts.pop()
    name = re.sub(r"[^a-z0-9._-]+", "-", (parts[-1] if parts else "model").lower()).strip("-._")
    return name[:64] or "model"


def catalogue(checkpoint: str | None, best: str | None, models: str = "") -> tuple[str, dict[str, str]]:
    """(the default model's name, every model's name → checkpoint URI or best record) of a service: the
    --checkpoint/--best model, then `models`, a comma-separated list of NAME=URI and `shipped`."""
    if bool(checkpoint) == bool(best):
        raise ValueError("give exactly one of --checkpoint (a checkpoint URI) or --best (a search's best record)")
    first = default_name(checkpoint, best)
    offered = {first: best or checkpoint}
    for item in (i.strip() for i in models.split(",")):
        if not item:
            continue
        if item == SHIPPED:
            more = shipped_models()
            if not more:
                raise ValueError(f"--models {SHIPPED}: no trained models under {SHIPPED_ROOT} (this installation "
                                 f"does not carry the repository's models/ folder)")
        else:
            name, sep, uri = item.partition("=")
            if not sep or not uri:
                raise ValueError(f"--models takes NAME=URI items or {SHIPPED}, comma-separated; got {item!r}")
            more = {name.strip(): uri.strip()}
        for name, uri in more.items():
            if not MODEL_NAME.fullmatch(name):
                raise ValueError(f"model name {name!r}: use lower-case letters, digits, '.', '_' and '-' "
                                 f"(at most 64, starting with a letter or digit)")
            if name in offered and offered[name] != uri:
                raise ValueError(f"two models are named {name!r} ({offered[name]} and {uri}); name one of them "
                                 f"with NAME=URI")
            offered[name] = uri
    return first, offered


def model_uris(checkpoint: str | None, best: str | None, models: str = "") -> tuple[str, dict[str, str],
                                                                                   dict[str, Any]]:
    """(the default model's name, every model's name → checkpoint URI, the search's best record or {}): the
    catalogue with the default's best record resolved to its checkpoint."""
    default, offered = catalogue(checkpoint, best, models)
    uri, record = model_source(checkpoint, best)
    return default, {**offered, default: uri}, record


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
    max_n: int = option(64, min=1, max=MAX_IMAGES, help="images per /sample request")
    max_n_animate: int = option(16, min=1, max=MAX_ANIMATED, help="images per /animate request")
    max_n_score: int = option(64, min=1, max=MAX_IMAGES, help="images per /score request")
    max_iw_samples: int = option(31, min=0, max=1000, help="importance samples per image a /score request may ask "
                                                           "for (a request encodes at most max_n_score x (1 + this) "
                                                           "images)")


@dataclass(frozen=True)
class ServeConfig(Settings):
    component = "serve"

    checkpoint: str | None = option(None, help="the model to serve: a checkpoint (folder or file) or a run folder "
                                               "(its newest checkpoint), local or s3://; give this or --best")
    best: str | None = option(None, help="or the model a search found best: its best record (best.json, or the "
                                         "search's folder)")
    models: str = option("", metavar="NAME=URI,...", help="more models to offer beside that one, chosen per request "
                                                         "by the serve_multiplexed_model_id header; 'shipped' adds "
                                                         "the repository's trained models")
    host: str = option("127.0.0.1", help="0.0.0.0 to listen on every interface")
    port: int = option(8000, min=1, max=65535, help="HTTP port")
    proxy_location: str = option("EveryNode", choices=("EveryNode", "HeadOnly"),
                                 help="where Serve answers HTTP: on every node with a replica, or on the head only")
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
    precision: str = option("auto", choices=PRECISIONS,
                            help="the decoder's (/sample, /animate): auto is bf16 where the replica's hardware "
                                 "computes it natively; /score and /reconstruct run in fp32")
    cpus_per_replica: float = option(1.0, above=0, cli=False, help="CPUs per replica")
    replica_resources: str | None = option(None, metavar="NAME=AMOUNT,...",
                                           help="custom Ray resources each replica needs, so replicas land only "
                                                "on nodes that offer them (a GPU type, a node pool)")
    max_ongoing_requests: int = option(64, min=1, help="requests a replica holds at once")
    settings: ServeSettings = section(ServeSettings, title="runtime settings (Serve's user_config)")
    detach: bool = option(False, help="return once deployed (on a running cluster)")
    app_name: str = option("draw", cli=False, help="the Serve application's name")

    def check(self) -> None:
        check_batch_fits(self.settings.max_batch_size, self.max_ongoing_requests)
        self.extra_resources()

    def extra_resources(self) -> dict[str, float]:
        from ..ray_cluster import resource_pairs

        return resource_pairs(self.replica_resources, "replica_resources")
