"""The HTTP service's Ray Serve deployment: which models it offers and how a replica loads them.

The service offers one model or several (checkpoint URIs, local or S3, a search's best record, the shipped
models), chosen per request by Ray Serve's model multiplexing: the `serve_multiplexed_model_id` header
names one, Serve routes the request to a replica that has it loaded, the replica loads it on first use
(`DRAWService._load`) and keeps the most recently used ones, on the GPU when it has one. The routes are
`routes.py`'s, over the replica that answers; `runner.py` batches each model's work.

    serve run draw_service.serve.app:build_app checkpoint=s3://bucket/runs/x/checkpoint_0010000
    serve deploy cluster/serve.yaml            # the config file; a RayService embeds the same
"""

import asyncio
import json
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from ray import serve

from .. import checkpoint, storage
from ..device import pick_device, pick_precision
from . import http_errors
from .config import MODEL_HEADER, ServeConfig, ServeSettings, check_batch_fits, model_uris
from .guard import RequestGuard, token_from_env
from .http_errors import ApiError
from .model_path import ModelPath, named_in_path
from .routes import PAGE, Served, Service, router, swagger_assets
from .runner import ModelRunner

log = logging.getLogger(__name__)

MODELS_PER_REPLICA = 8  # loaded at once; the least recently used one makes room for another

# The schema is this deployment's own (`/openapi.json`), not FastAPI's generic one.
api = FastAPI(title="draw-service", version="2", docs_url=None, redoc_url=None, openapi_url=None,
              description="Images from a trained DRAW model (Gregor et al., 2015), drawn step by step; their "
                          "likelihood; the drawing of your own image.")
api.add_middleware(RequestGuard, token=token_from_env)  # read in the replica, when it builds its middleware
api.add_middleware(ModelPath)  # added last, so outermost: the guard sees /sample for /models/{name}/sample
api.mount("/static/page", StaticFiles(directory=PAGE), name="page")
if swagger_assets() is not None:
    api.mount("/static/swagger", StaticFiles(directory=swagger_assets()), name="swagger")
http_errors.install(api)
api.include_router(router)


@serve.deployment(max_ongoing_requests=ServeConfig().max_ongoing_requests, user_config=ServeSettings().to_dict())
@serve.ingress(api)
class DRAWService(Service):
    def __init__(self, checkpoint_uri: str | None = None, best: str | None = None, device: str = "auto",
                 models: str = "", precision: str = "auto"):
        self.default, self.uris, self.record = model_uris(checkpoint_uri, best, models)  # uris: name -> URI
        self.secured = token_from_env() is not None
        self.device = pick_device(device)
        # the decoder's (/sample, /animate); /score and /reconstruct stay fp32: a score is a bound, as evaluated
        self.precision, why = pick_precision(precision, self.device)
        self.settings = ServeSettings()
        self._schemas: dict[str, dict] = {}
        self.loads: dict[str, int] = {}  # how often this replica loaded each model (/info shows it)
        # What /models says of each, read once; the weights are loaded per request by `served` (multiplexed).
        self.cards = {name: self._card(name, checkpoint.load(uri)) for name, uri in self.uris.items()}
        log.info("serving %s (default %s) on %s, decoding in %s (%s)", ", ".join(self.uris), self.default,
                 self.device, self.precision, why)

    def _card(self, name: str, state: dict[str, Any]) -> dict[str, Any]:
        config, shape = checkpoint.model_config(state, self.uris[name])
        data = (state.get("train_config") or {}).get("data") or {}
        return {"name": name, "default": name == self.default, "dataset": data.get("dataset"),
                "likelihood": config.likelihood, "model": config.described(),
                "image_shape": list(shape), "step": state["step"],
                "metrics": {k: v for k, v in state.get("metrics", {}).items() if isinstance(v, (int, float, str))},
                "evaluation": _evaluation(self.uris[name])}

    @serve.multiplexed(max_num_models_per_replica=MODELS_PER_REPLICA)
    async def _load(self, name: str) -> Served:
        uri = self.uris[name]
        model, state = await asyncio.get_running_loop().run_in_executor(None, checkpoint.load_model, uri,
                                                                        self.device)
        self.loads[name] = self.loads.get(name, 0) + 1  # Serve's multiplexer loads a model once at a time
        log.info("loaded model %s from %s (step %d)", name, uri, state["step"])
        runner = ModelRunner(model, self.device, self.precision)
        return Served(name, uri, runner, state["step"], state.get("metrics", {}))

    async def served(self) -> Served:
        """The model this request asks for (Serve's `serve_multiplexed_model_id` header; the default without
        one), loaded, its batching up to date."""
        in_header, in_path = serve.get_multiplexed_model_id(), named_in_path()
        if in_header and in_path and in_header != in_path:
            raise ApiError(422, "model_conflict", f"the path names the model {in_path[:64]!r} but the "
                                                  f"{MODEL_HEADER} header names {in_header[:64]!r}; name one",
                           ("header", MODEL_HEADER))
        name = in_path or in_header or self.default
        if name not in self.uris:  # a name is only looked up, never opened: '../x' or 's3://...' is just unknown
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise ApiError(404, "unknown_model", f"no model named {shown!r} here; this service offers "
                                                 f"{', '.join(self.uris)} (GET /models)",
                           ("path", "name") if in_path else ("header", MODEL_HEADER))
        served = await self._load(name)
        if served.settings is not self.settings:
            served.runner.set_batching(self.settings)
            served.settings = self.settings
        return served

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        settings = ServeSettings.from_dict(user_config)
        ctx = serve.get_replica_context()
        max_ongoing = getattr(getattr(ctx, "_deployment_config", None), "max_ongoing_requests", None)
        if max_ongoing is not None:
            check_batch_fits(settings.max_batch_size, max_ongoing)
        self.settings = settings  # each model's runner takes it up with its next request
        self._schemas = {}  # their limits are the settings'


def _evaluation(uri: str) -> dict[str, Any] | None:
    """What `draw-service evaluate` wrote beside a model (its `evaluate.json`: the split, the bound, bits/dim),
    as the shipped models carry it; None where there is none."""
    if uri.endswith((".pt", ".json")):
        return None
    try:
        found = json.loads(storage.read_bytes(storage.resolve(uri).join("evaluate.json")))
    except (FileNotFoundError, ValueError):
        return None
    keep = ("split", "count", "nll_bound", "bits_per_dim", "iw_samples", "iwae_bound", "iwae_bits_per_dim")
    return {k: found[k] for k in keep if k in found}


class AppArgs(BaseModel):
    """Arguments of `build_app`, as given to `serve run` (key=value) or in a Serve config file."""

    checkpoint: str | None = None
    best: str | None = None
    models: str = ""
    device: str = "auto"
    precision: str = "auto"


def build_app(args: AppArgs) -> serve.Application:
    """The Serve application: `serve run draw_service.serve.app:build_app best=s3://.../best.json`."""
    return DRAWService.bind(checkpoint_uri=args.checkpoint, best=args.best, device=args.device, models=args.models,
                             precision=args.precision)
