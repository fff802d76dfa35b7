"""The HTTP service: a Ray Serve deployment with a FastAPI ingress, its routes.

The replica loads one checkpoint at start (a checkpoint URI, local or S3, or a search's best record) and
keeps the model on the GPU when it has one; `runner.py` batches the work, `uploads.py` reads images,
`openapi.py` narrows the published schema to this deployment, `http_errors.py` says what goes wrong, and
`guard.py` bounds every request before a route sees it (sizes, the time a body may take, the bearer
token). `GET /` is a page to try it all; `/docs` is served from local files (no CDN).

    serve run draw_service.serve.app:build_app checkpoint=s3://bucket/runs/x/checkpoint_0010000
    serve deploy cluster/serve.yaml            # the config file; a RayService embeds the same
"""

import asyncio
import base64
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from ray import serve

from .. import checkpoint
from ..device import pick_device
from ..viz import drawing_frames, gif_bytes, grid_image, png_bytes
from . import http_errors
from .config import ServeConfig, ServeSettings, check_batch_fits, model_source
from .guard import RequestGuard, token_from_env
from .http_errors import ApiError, json_or_png_body, over_limit, responses, wanted_format
from .openapi import narrowed_schema
from .runner import ModelRunner
from .schema import (
    MAX_SEED,
    AnimateRequest,
    ReconstructRequest,
    SampleRequest,
    SampleResponse,
    ScoreRequest,
    ScoreResponse,
)
from .uploads import UploadError, as_model_input, request_images

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "page"

# The schema is this deployment's own (`openapi.json` below), not FastAPI's generic one.
api = FastAPI(title="draw-service", version="2", docs_url=None, redoc_url=None, openapi_url=None,
              description="Images from a trained DRAW model (Gregor et al., 2015), drawn step by step; their "
                          "likelihood; the drawing of your own image.")
api.add_middleware(RequestGuard, token=token_from_env)  # read in the replica, when it builds its middleware
api.mount("/static/page", StaticFiles(directory=PAGE), name="page")
http_errors.install(api)


def _swagger_assets() -> Path | None:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


if _swagger_assets() is not None:
    api.mount("/static/swagger", StaticFiles(directory=_swagger_assets()), name="swagger")


@serve.deployment(max_ongoing_requests=ServeConfig().max_ongoing_requests, user_config=ServeSettings().to_dict())
@serve.ingress(api)
class DRAWService:
    def __init__(self, checkpoint_uri: str | None = None, best: str | None = None, device: str = "auto"):
        checkpoint_uri, self.record = model_source(checkpoint_uri, best)
        self.secured = token_from_env() is not None
        self.device = pick_device(device)
        model, state = checkpoint.load_model(checkpoint_uri, self.device)
        self.runner = ModelRunner(model, self.device)
        self.model, self.shape = model, self.runner.shape
        self.checkpoint_uri, self.step, self.metrics = checkpoint_uri, state["step"], state.get("metrics", {})
        self.settings = ServeSettings()
        self._schema: dict | None = None
        log.info("serving %s (step %d) on %s", checkpoint_uri, self.step, self.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        settings = ServeSettings.from_dict(user_config)
        ctx = serve.get_replica_context()
        max_ongoing = getattr(getattr(ctx, "_deployment_config", None), "max_ongoing_requests", None)
        if max_ongoing is not None:
            check_batch_fits(settings.max_batch_size, max_ongoing)
        self.settings = settings
        self._schema = None  # its limits are the settings'
        self.runner.set_batching(settings)

    def _images(self, request_body: bytes, content_type: str, model: type[BaseModel], field: str,
                max_n: int) -> np.ndarray:
        try:
            return request_images(request_body, content_type, model, field, self.shape, max_n)
        except UploadError as err:
            raise ApiError(err.status, err.kind, str(err), err.loc) from None

    def _draw_gif(self, record, scale: int = 3, reading: bool = False) -> bytes:
        cfg = self.model.config
        return gif_bytes(drawing_frames(record, cfg.write_n if cfg.attention else None, scale=scale,
                                        read_n=cfg.read_n if cfg.attention and reading else None))

    # --- HTTP ----------------------------------------------------------------------------------
    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self):
        return FileResponse(PAGE / "index.html", media_type="text/html")

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self):
        if self._schema is None:
            self._schema = narrowed_schema(api, self.settings, self.shape, self.secured)
        return JSONResponse(self._schema)

    @api.get("/docs", include_in_schema=False)
    async def docs(self):
        if _swagger_assets() is None:
            return HTMLResponse("<p>The API documentation needs the swagger-ui-bundle package; the schema is at "
                                "<a href='/openapi.json'>/openapi.json</a>.</p>")
        return get_swagger_ui_html(openapi_url="/openapi.json", title="draw-service API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @api.post("/sample", response_model=SampleResponse, responses=responses(
        401, 406, 408, 413, 422, ok={"content": {"image/png": {}}, "description": "arrays, base64 bytes or a PNG"}))
    async def sample(self, body: SampleRequest, request: Request):
        """New images from the prior: JSON arrays, base64 bytes (`format: u8`), or a PNG grid."""
        fmt = wanted_format(body.format, request.headers.get("accept"))
        if body.n > self.settings.max_n:
            raise over_limit("n", body.n, self.settings.max_n)
        seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
        images = await self.runner.decode_batch((body.n, seed, body.temperature))
        if fmt == "png":
            return Response(png_bytes(grid_image(images)), media_type="image/png", headers={"X-Seed": str(seed)})
        answer: dict[str, Any] = {"seed": seed, "n": body.n, "shape": list(images.shape)}
        if fmt == "u8":
            answer["u8"] = base64.b64encode((images.numpy() * 255).round().astype(np.uint8).tobytes()).decode()
        else:
            answer["images"] = np.round(images.numpy().astype(np.float64), 5).tolist()
        # A JSONResponse skips re-validating thousands of floats against the response model (documented only).
        return JSONResponse(answer)

    @api.post("/animate", responses=responses(
        401, 408, 413, 422, ok={"content": {"image/gif": {}}, "description": "an animated GIF"}))
    async def animate(self, body: AnimateRequest):
        """A GIF of the canvas being drawn over the T steps, with each step's write window in red."""
        if body.n > self.settings.max_n_animate:
            raise over_limit("n", body.n, self.settings.max_n_animate, "animation limit")
        seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
        eps = self.runner.latents(body.n, seed, body.temperature)
        gif = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self._draw_gif(self.runner.animate(eps)))
        return Response(gif, media_type="image/gif", headers={"X-Seed": str(seed)})

    @api.post("/score", response_model=ScoreResponse, openapi_extra=json_or_png_body(
        ScoreRequest, "images as JSON arrays, or one PNG of the model's size as the body"),
        responses=responses(401, 408, 413, 415, 422))
    async def score(self, request: Request,
                    iw_samples: int = Query(0, ge=0, le=1000, description="k > 0 adds the importance-weighted "
                                                                          "bound with k samples (at most "
                                                                          "max_iw_samples)"),
                    seed: int = Query(0, ge=0, le=MAX_SEED, description="seeds the posterior samples")):
        """The likelihood of images: per image the NLL bound (and with `iw_samples` the tighter
        importance-weighted bound), in nats and in bits per dimension."""
        if iw_samples > self.settings.max_iw_samples:
            raise over_limit("iw_samples", iw_samples, self.settings.max_iw_samples, loc=("query",))
        pixels = self._images(await request.body(), request.headers.get("content-type", ""), ScoreRequest, "images",
                              self.settings.max_n_score)
        x = as_model_input(pixels, self.model.config.likelihood)
        scores = await self.runner.score_batch((x, iw_samples, seed))
        return {"likelihood": self.model.config.likelihood, "iw_samples": iw_samples, "scores": scores}

    @api.post("/reconstruct", openapi_extra=json_or_png_body(
        ReconstructRequest, "one image as a JSON array, or one PNG of the model's size as the body"),
        responses=responses(401, 408, 413, 415, 422, ok={"content": {"image/gif": {}},
                                                         "description": "an animated GIF"}))
    async def reconstruct(self, request: Request,
                          seed: int = Query(0, ge=0, le=MAX_SEED, description="seeds the posterior samples")):
        """A GIF of DRAW reconstructing your image step by step: the read window in green, the write window
        in red (the paper's figure 3)."""
        pixels = self._images(await request.body(), request.headers.get("content-type", ""), ReconstructRequest,
                              "image", 1)
        x = as_model_input(pixels, self.model.config.likelihood)
        gif = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self._draw_gif(self.runner.reconstruct(x, seed), scale=6, reading=True))
        return Response(gif, media_type="image/gif")

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/info", responses=responses(401))
    async def info(self) -> dict[str, Any]:
        """The model, how it scored, and how this replica has batched so far; where it came from (its storage
        paths) only when the service has a bearer token, which this request then carried."""
        stats = self.runner.stats
        answer = {
            "model": self.model.config.to_dict(), "image_shape": list(self.shape), "step": self.step,
            "metrics": {k: v for k, v in self.metrics.items() if isinstance(v, (int, float, str))},
            "device": str(self.device), "settings": self.settings.to_dict(),
            "stats": {**stats, "batch_sizes": {str(k): v for k, v in sorted(stats["batch_sizes"].items())}},
            "time": time.time(), "auth": self.secured,
        }
        if self.secured:
            answer["checkpoint"] = self.checkpoint_uri
            answer["search"] = {k: self.record[k] for k in ("search", "trial_id", "metric", "value", "eval_split")
                                if k in self.record} or None
        return answer


class AppArgs(BaseModel):
    """Arguments of `build_app`, as given to `serve run` (key=value) or in a Serve config file."""

    checkpoint: str | None = None
    best: str | None = None
    device: str = "auto"


def build_app(args: AppArgs) -> serve.Application:
    """The Serve application: `serve run draw_service.serve.app:build_app best=s3://.../best.json`."""
    return DRAWService.bind(checkpoint_uri=args.checkpoint, best=args.best, device=args.device)
