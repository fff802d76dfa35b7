"""The HTTP service: a Ray Serve deployment with a FastAPI ingress.

The replica loads one checkpoint at start (a checkpoint URI, local or S3, or a search's best record) and
keeps the model on the GPU when it has one. Concurrent /sample requests are gathered by `@serve.batch`
into one decoder pass whatever their sizes, as are /score requests into one encoder pass; each request's
noise comes from its own seeded generator, so a seed gives the same answer batched or alone, and the
same images as `draw-service sample --seed`. Every size is bounded (images, importance samples, body
bytes, the time a body may take to arrive: `guard.py`), so no request can make a replica allocate or
wait without limit. `GET /` is a page to try it all; `/docs` is served from local files (no CDN).

    serve run draw_service.serve.app:build_app checkpoint=s3://bucket/runs/x/checkpoint_0010000
    serve deploy cluster/serve.yaml            # the config file; a RayService embeds the same
"""

import asyncio
import base64
import collections
import copy
import logging
import math
import os
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from ray import serve

from .. import best as best_record
from .. import checkpoint
from ..device import pick_device
from ..model.cuda_graph_decoder import GraphedDecoder
from ..model.likelihood import bits_per_dim
from ..viz import drawing_frames, gif_bytes, grid_image, png_bytes
from .config import ServeSettings
from .guard import TOKEN_ENV, RequestGuard, error_body
from .schema import (
    MAX_SEED,
    AnimateRequest,
    ReconstructRequest,
    SampleRequest,
    SampleResponse,
    ScoreRequest,
    ScoreResponse,
)
from .uploads import UploadError, arrays_to_batch, png_to_array

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "page"
_token: dict[str, str | None] = {"value": None}  # this replica's bearer token, read from TOKEN_ENV at start

api = FastAPI(title="draw-service", version="2", docs_url=None, redoc_url=None,
              description="Images from a trained DRAW model (Gregor et al., 2015), drawn step by step; their "
                          "likelihood; the drawing of your own image.")
api.add_middleware(RequestGuard, token=lambda: _token["value"])
api.mount("/static/page", StaticFiles(directory=PAGE), name="page")


def _swagger_assets() -> Path | None:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


if _swagger_assets() is not None:
    api.mount("/static/swagger", StaticFiles(directory=_swagger_assets()), name="swagger")

ERRORS = {401: "a bearer token is required", 406: "the Accept header asks for a format this route cannot answer",
          408: "the body did not arrive in time", 413: "the body or the image is too large",
          415: "the body is not an image or JSON", 422: "the request is invalid"}


class ApiError(Exception):
    def __init__(self, status: int, kind: str, msg: str, loc: tuple = ("body",)):
        super().__init__(msg)
        self.status, self.kind, self.msg, self.loc = status, kind, msg, loc


@api.exception_handler(ApiError)
async def _api_error(request: Request, err: ApiError):
    return Response(error_body(err.kind, err.msg, err.loc), status_code=err.status, media_type="application/json")


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, err: RequestValidationError):
    # FastAPI's own shape without the offending input: nothing large, and no NaN, is ever echoed back.
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"), "type": e.get("type", "invalid")}
              for e in err.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def _validation_error(err: ValidationError, prefix: tuple = ("body",)) -> ApiError:
    first = err.errors()[0]
    return ApiError(422, first.get("type", "invalid"), first.get("msg", "invalid"),
                    prefix + tuple(first.get("loc", ())))


def _wanted_format(body_format: str | None, accept: str | None) -> str:
    if body_format:
        return body_format
    accept = (accept or "*/*").lower()
    if "image/png" in accept:
        return "png"
    if "application/json" in accept or "*/*" in accept or "application/*" in accept:
        return "json"
    raise ApiError(406, "not_acceptable", "cannot answer with that Accept header: ask for image/png or "
                                          "application/json", ("header", "accept"))


def _responses(*statuses: int, ok: dict | None = None) -> dict:
    out = {s: {"description": ERRORS[s], "content": {"application/json": {}}} for s in statuses}
    if ok:
        out[200] = ok
    return out


def _json_or_png_body(model: type[BaseModel], description: str) -> dict:
    return {"requestBody": {"required": True, "description": description, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}}}}}


@serve.deployment(max_ongoing_requests=64, user_config=ServeSettings().to_dict())
@serve.ingress(api)
class DRAWService:
    def __init__(self, checkpoint_uri: str | None = None, best: str | None = None, device: str = "auto"):
        if bool(checkpoint_uri) == bool(best):
            raise ValueError("give exactly one of checkpoint (a checkpoint URI) or best (a search's best record)")
        self.record: dict[str, Any] = {}
        if best:
            self.record = best_record.read(best)
            checkpoint_uri = self.record["checkpoint"]
        _token["value"] = os.environ.get(TOKEN_ENV) or None
        self.device = pick_device(device)
        self.model, state = checkpoint.load_model(checkpoint_uri, self.device)
        self.shape = tuple(self.model.image_shape)
        self.dims = math.prod(self.shape)
        # On a GPU, decoding replays CUDA graphs (launches, not maths, dominate small decodes there).
        self.graphed = GraphedDecoder(self.model) if self.device.type == "cuda" else None
        self.checkpoint_uri, self.step, self.metrics = checkpoint_uri, state["step"], state.get("metrics", {})
        self.settings = ServeSettings()
        self.stats = {"requests": 0, "images": 0, "batches": 0, "largest_batch": 0,
                      "batch_sizes": collections.Counter(), "scored": 0}
        self._schema: dict | None = None
        api.openapi = self.openapi
        log.info("serving %s (step %d) on %s", checkpoint_uri, self.step, self.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        settings = ServeSettings.from_dict(user_config)
        ctx = serve.get_replica_context()
        max_ongoing = getattr(getattr(ctx, "_deployment_config", None), "max_ongoing_requests", None)
        if max_ongoing is not None and settings.max_batch_size > max_ongoing:
            raise ValueError(f"max_batch_size {settings.max_batch_size} exceeds max_ongoing_requests {max_ongoing}: "
                             f"a batch could never fill; raise max_ongoing_requests or lower max_batch_size")
        self.settings = settings
        self._schema = None  # its limits are the settings'
        for batch in (self._decode_batch, self._score_batch):
            batch.set_max_batch_size(settings.max_batch_size)
            batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    # --- the published schema, narrowed to this deployment's limits ----------------------------
    def openapi(self) -> dict:
        if self._schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = copy.deepcopy(get_openapi(title=api.title, version=api.version, description=api.description,
                                               routes=api.routes))
            for model in (ScoreRequest, ReconstructRequest):  # bodies the handlers read themselves (JSON or PNG)
                schema["components"]["schemas"][model.__name__] = model.model_json_schema(
                    ref_template="#/components/schemas/{model}")
            props = lambda name: schema["components"]["schemas"][name]["properties"]  # noqa: E731
            s = self.settings
            props("SampleRequest")["n"]["maximum"] = s.max_n
            props("AnimateRequest")["n"]["maximum"] = s.max_n_animate
            C, H, W = self.shape
            pixel = {"type": "number", "minimum": 0, "maximum": 1}
            row = {"type": "array", "items": pixel, "minItems": W, "maxItems": W}
            plane = {"type": "array", "items": row, "minItems": H, "maxItems": H}
            image = {"type": "array", "items": plane, "minItems": C, "maxItems": C}
            props("ScoreRequest")["images"] = {"type": "array", "items": image, "minItems": 1,
                                               "maxItems": s.max_n_score, "description": "(n, C, H, W) in [0, 1]"}
            props("ReconstructRequest")["image"] = {**image, "description": "(C, H, W) in [0, 1]"}
            for op in schema["paths"]["/score"]["post"]["parameters"]:
                if op["name"] == "iw_samples":
                    op["schema"]["maximum"] = s.max_iw_samples
            if _token["value"]:  # say how to authenticate, on every route that needs it
                schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                for path, ops in schema["paths"].items():
                    if path != "/healthz":
                        for op in ops.values():
                            op["security"] = [{"bearer": []}]
            self._schema = schema
        return self._schema

    # --- the batched decoder and scorer ---------------------------------------------------------
    def _latents(self, n: int, seed: int, temperature: float) -> torch.Tensor:
        """The request's own latents (T, n, z): the same seed gives the same images as `draw-service sample`."""
        return self.model.prior_latents(n, seed, temperature)

    @torch.inference_mode()
    def _decode(self, eps: torch.Tensor) -> torch.Tensor:
        eps = eps.to(self.device)
        images = self.graphed(eps) if self.graphed is not None else self.model.decode(eps)[0]
        return images.float().cpu()

    def _count(self, sizes: list[int]) -> None:
        self.stats["batches"] += 1
        self.stats["requests"] += len(sizes)
        self.stats["images"] += sum(sizes)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(sizes))
        self.stats["batch_sizes"][len(sizes)] += 1

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _decode_batch(self, jobs: list[tuple[int, int, float]]) -> list[torch.Tensor]:
        eps = torch.cat([self._latents(*job) for job in jobs], dim=1)  # (T, Σn, z)
        # Decode off the event loop, so requests keep arriving (and the next batch fills) meanwhile.
        images = await asyncio.get_running_loop().run_in_executor(None, self._decode, eps)
        sizes = [n for n, _, _ in jobs]
        self._count(sizes)
        return list(images.split(sizes))

    @torch.inference_mode()
    def _score(self, jobs: list[tuple[torch.Tensor, int, int]]) -> list[list[dict[str, float]]]:
        """One encoder pass for every job's images: n rows for the bound, k·n more for the IWAE bound."""
        cfg = self.model.config
        rows, noise = [], []
        for x, k, seed in jobs:
            g = torch.Generator().manual_seed(seed)
            batch = torch.cat([x, x.repeat(k, 1, 1, 1)]) if k else x  # sample i of image j at n + i·n + j
            rows.append(batch)
            noise.append(torch.randn(cfg.T, len(batch), cfg.z_size, generator=g))
        out = self.model(torch.cat(rows).to(self.device), torch.cat(noise, 1).to(self.device))
        loss, log_w = out.loss.double().cpu(), out.log_weight().double().cpu()
        answers, start = [], 0
        for x, k, _ in jobs:
            n = len(x)
            nll = loss[start:start + n]
            scores = [{"nll_bound": float(v), "bits_per_dim": bits_per_dim(float(v), self.dims)} for v in nll]
            if k:
                w = log_w[start + n:start + n + k * n].view(k, n)
                iwae = -(torch.logsumexp(w, 0) - math.log(k))
                for s, v in zip(scores, iwae):
                    s.update({"iwae_bound": float(v), "iwae_bits_per_dim": bits_per_dim(float(v), self.dims)})
            answers.append(scores)
            start += n * (k + 1)
        return answers

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _score_batch(self, jobs: list[tuple[torch.Tensor, int, int]]) -> list[list[dict[str, float]]]:
        answers = await asyncio.get_running_loop().run_in_executor(None, self._score, jobs)
        self.stats["scored"] += sum(len(x) for x, _, _ in jobs)
        return answers

    # --- reading images from requests -----------------------------------------------------------
    def _as_model_input(self, pixels: np.ndarray) -> torch.Tensor:
        """Pixel values in [0, 1] `(n, C, H, W)` as the model's likelihood reads them."""
        x = torch.as_tensor(pixels, dtype=torch.float32)
        if self.model.config.likelihood == "bernoulli":
            return (x >= 0.5).float()  # binary pixels, as the model was trained on
        return torch.round(x * 255) / 255  # the nearest 8-bit value

    async def _images(self, request: Request, model: type[BaseModel], field: str, max_n: int) -> np.ndarray:
        body = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype == "image/png":
                return png_to_array(body, self.shape).astype(np.float64) / 255
            if ctype not in ("application/json", ""):
                raise UploadError(415, f"send image/png or application/json, not {ctype}", "unsupported_media")
            try:
                req = model.model_validate_json(body)
            except ValidationError as err:
                raise _validation_error(err) from None
            images = getattr(req, field)
            return arrays_to_batch(images if field == "images" else [images], self.shape, max_n)
        except UploadError as err:
            raise ApiError(err.status, err.kind, str(err)) from None

    # --- HTTP ----------------------------------------------------------------------------------
    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self):
        return FileResponse(PAGE / "index.html", media_type="text/html")

    @api.get("/docs", include_in_schema=False)
    async def docs(self):
        if _swagger_assets() is None:
            return HTMLResponse("<p>The API documentation needs the swagger-ui-bundle package; the schema is at "
                                "<a href='/openapi.json'>/openapi.json</a>.</p>")
        return get_swagger_ui_html(openapi_url="/openapi.json", title="draw-service API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @api.post("/sample", response_model=SampleResponse, responses=_responses(
        401, 406, 408, 413, 422, ok={"content": {"image/png": {}}, "description": "arrays, base64 bytes or a PNG"}))
    async def sample(self, body: SampleRequest, request: Request):
        """New images from the prior: JSON arrays, base64 bytes (`format: u8`), or a PNG grid."""
        fmt = _wanted_format(body.format, request.headers.get("accept"))
        if body.n > self.settings.max_n:
            raise ApiError(422, "less_than_equal", f"n = {body.n} is over this deployment's limit of "
                                                   f"{self.settings.max_n}", ("body", "n"))
        seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
        images = await self._decode_batch((body.n, seed, body.temperature))
        if fmt == "png":
            return Response(png_bytes(grid_image(images)), media_type="image/png", headers={"X-Seed": str(seed)})
        answer: dict[str, Any] = {"seed": seed, "n": body.n, "shape": list(images.shape)}
        if fmt == "u8":
            answer["u8"] = base64.b64encode((images.numpy() * 255).round().astype(np.uint8).tobytes()).decode()
        else:
            answer["images"] = np.round(images.numpy().astype(np.float64), 5).tolist()
        # A JSONResponse skips re-validating thousands of floats against the response model (documented only).
        return JSONResponse(answer)

    @api.post("/animate", responses=_responses(
        401, 408, 413, 422, ok={"content": {"image/gif": {}}, "description": "an animated GIF"}))
    async def animate(self, body: AnimateRequest):
        """A GIF of the canvas being drawn over the T steps, with each step's write window in red."""
        if body.n > self.settings.max_n_animate:
            raise ApiError(422, "less_than_equal", f"n = {body.n} is over this deployment's animation limit of "
                                                   f"{self.settings.max_n_animate}", ("body", "n"))
        seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
        eps = self._latents(body.n, seed, body.temperature)

        def draw() -> bytes:
            with torch.inference_mode():
                _, rec = self.model.decode(eps.to(self.device), record=True)
            cfg = self.model.config
            return gif_bytes(drawing_frames(rec, cfg.write_n if cfg.attention else None))

        gif = await asyncio.get_running_loop().run_in_executor(None, draw)
        return Response(gif, media_type="image/gif", headers={"X-Seed": str(seed)})

    @api.post("/score", response_model=ScoreResponse, openapi_extra=_json_or_png_body(
        ScoreRequest, "images as JSON arrays, or one PNG of the model's size as the body"),
        responses=_responses(401, 408, 413, 415, 422))
    async def score(self, request: Request,
                    iw_samples: int = Query(0, ge=0, le=1000, description="k > 0 adds the importance-weighted "
                                                                          "bound with k samples (at most "
                                                                          "max_iw_samples)"),
                    seed: int = Query(0, ge=0, le=MAX_SEED, description="seeds the posterior samples")):
        """The likelihood of images: per image the NLL bound (and with `iw_samples` the tighter
        importance-weighted bound), in nats and in bits per dimension."""
        if iw_samples > self.settings.max_iw_samples:
            raise ApiError(422, "less_than_equal", f"iw_samples = {iw_samples} is over this deployment's limit of "
                                                   f"{self.settings.max_iw_samples}", ("query", "iw_samples"))
        pixels = await self._images(request, ScoreRequest, "images", self.settings.max_n_score)
        scores = await self._score_batch((self._as_model_input(pixels), iw_samples, seed))
        return {"likelihood": self.model.config.likelihood, "iw_samples": iw_samples, "scores": scores}

    @api.post("/reconstruct", openapi_extra=_json_or_png_body(
        ReconstructRequest, "one image as a JSON array, or one PNG of the model's size as the body"),
        responses=_responses(401, 408, 413, 415, 422, ok={"content": {"image/gif": {}},
                                                          "description": "an animated GIF"}))
    async def reconstruct(self, request: Request,
                          seed: int = Query(0, ge=0, le=MAX_SEED, description="seeds the posterior samples")):
        """A GIF of DRAW reconstructing your image step by step: the read window in green, the write window
        in red (the paper's figure 3)."""
        pixels = await self._images(request, ReconstructRequest, "image", 1)
        x = self._as_model_input(pixels)

        def draw() -> bytes:
            g = torch.Generator().manual_seed(seed)
            cfg = self.model.config
            eps = torch.randn(cfg.T, 1, cfg.z_size, generator=g)
            with torch.inference_mode():
                rec = self.model(x.to(self.device), eps.to(self.device), record=True).record
            return gif_bytes(drawing_frames(rec, cfg.write_n if cfg.attention else None, scale=6,
                                            read_n=cfg.read_n if cfg.attention else None))

        gif = await asyncio.get_running_loop().run_in_executor(None, draw)
        return Response(gif, media_type="image/gif")

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/info", responses=_responses(401))
    async def info(self) -> dict[str, Any]:
        """The model, how it scored, and how this replica has batched so far; where it came from (its storage
        paths) only when the service has a bearer token, which this request then carried."""
        answer = {
            "model": self.model.config.to_dict(), "image_shape": list(self.shape), "step": self.step,
            "metrics": {k: v for k, v in self.metrics.items() if isinstance(v, (int, float, str))},
            "device": str(self.device), "settings": self.settings.to_dict(),
            "stats": {**self.stats, "batch_sizes": {str(k): v for k, v in sorted(self.stats["batch_sizes"].items())}},
            "time": time.time(), "auth": bool(_token["value"]),
        }
        if _token["value"]:
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
