"""The HTTP routes of the service, over the model each request picked (`Served`).

Each route is a plain FastAPI function over the replica that answers it (`replica()`, a dependency):
`Service` is what they need from the deployment (`app.py: DRAWService`): the model a request asks for
(`served()`), the runtime settings, and what `/models` and `/info` say.
`openapi.py` narrows the schema, `uploads.py` reads images, `http_errors.py` says what went wrong.
"""

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from ..viz import drawing_frames, gif_bytes, grid_image, png_bytes
from .config import MODEL_HEADER, ServeSettings
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

PAGE = Path(__file__).parent / "page"

router = APIRouter()  # the deployment's FastAPI app includes it (`app.py`)


def swagger_assets() -> Path | None:
    """The Swagger UI's files, served locally (no CDN), or None without the swagger-ui-bundle package."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


@dataclass
class Served:
    """One of the service's models, loaded on this replica: its batched runner and what /info says of it."""

    name: str
    checkpoint_uri: str
    runner: ModelRunner
    step: int
    metrics: dict[str, Any]
    settings: ServeSettings | None = None  # the batching its runner was last given

    @property
    def model(self):
        return self.runner.model

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.runner.shape


class Service:
    """What the routes need of the deployment that answers them (`app.py: DRAWService`)."""

    default: str  # the model a request without the header gets
    uris: dict[str, str]  # every model's name -> checkpoint URI
    cards: dict[str, dict[str, Any]]  # what /models says of each
    record: dict[str, Any]  # the search's best record the default model came from, or {}
    settings: ServeSettings
    secured: bool  # a bearer token guards the routes
    device: Any
    precision: str
    _schemas: dict[str, dict]  # /openapi.json per model, until the settings change
    loads: dict[str, int]  # how often this replica loaded each model

    async def served(self) -> Served:
        raise NotImplementedError


async def replica() -> Service:
    """The replica answering this request. The routes are plain functions (not `serve.ingress`'s methods,
    whose binding does not survive Serve pickling the app by reference to another module)."""
    from ray import serve

    return serve.get_replica_context().servable_object


Replica = Annotated[Service, Depends(replica)]


def _images(served: Served, request_body: bytes, content_type: str, model: type[BaseModel], field: str,
            max_n: int) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The request's images in the model's shape, and the (height, width) an upload was resized from."""
    try:
        return request_images(request_body, content_type, model, field, served.shape, max_n)
    except UploadError as err:
        raise ApiError(err.status, err.kind, str(err), err.loc) from None


def _draw_gif(served: Served, record, scale: int = 3, reading: bool = False) -> bytes:
    cfg = served.model.config
    return gif_bytes(drawing_frames(record, cfg.write_n if cfg.attention else None, scale=scale,
                                    read_n=cfg.read_n if cfg.attention and reading else None))


# --- HTTP ----------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    return FileResponse(PAGE / "index.html", media_type="text/html")


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request, svc: Replica):
    served = await svc.served()
    if served.name not in svc._schemas:
        svc._schemas[served.name] = narrowed_schema(request.app, svc.settings, served.shape, svc.secured,
                                                    served.name, list(svc.uris), MODEL_HEADER)
    return JSONResponse(svc._schemas[served.name])


@router.get("/docs", include_in_schema=False)
async def docs():
    if swagger_assets() is None:
        return HTMLResponse("<p>The API documentation needs the swagger-ui-bundle package; the schema is at "
                            "<a href='/openapi.json'>/openapi.json</a>.</p>")
    return get_swagger_ui_html(openapi_url="/openapi.json", title="draw-service API",
                               swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                               swagger_css_url="/static/swagger/swagger-ui.css",
                               swagger_favicon_url="/static/swagger/favicon-32x32.png")


@router.post("/sample", response_model=SampleResponse, responses=responses(
    401, 404, 406, 408, 413, 422,
    ok={"content": {"image/png": {}}, "description": "arrays, base64 bytes or a PNG"}))
async def sample(body: SampleRequest, request: Request, svc: Replica):
    """New images from the prior: JSON arrays, base64 bytes (`format: u8`), or a PNG grid."""
    fmt = wanted_format(body.format, request.headers.get("accept"))
    if body.n > svc.settings.max_n:
        raise over_limit("n", body.n, svc.settings.max_n)
    seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
    served = await svc.served()
    images = await served.runner.decode_batch((body.n, seed, body.temperature))
    if fmt == "png":
        return Response(png_bytes(grid_image(images)), media_type="image/png", headers={"X-Seed": str(seed)})
    answer: dict[str, Any] = {"seed": seed, "n": body.n, "shape": list(images.shape)}
    if fmt == "u8":
        answer["u8"] = base64.b64encode((images.numpy() * 255).round().astype(np.uint8).tobytes()).decode()
    else:
        answer["images"] = np.round(images.numpy().astype(np.float64), 5).tolist()
    # A JSONResponse skips re-validating thousands of floats against the response model (documented only).
    return JSONResponse(answer)


@router.post("/animate", responses=responses(
    401, 404, 408, 413, 422, ok={"content": {"image/gif": {}}, "description": "an animated GIF"}))
async def animate(body: AnimateRequest, svc: Replica):
    """A GIF of the canvas being drawn over the T steps, with each step's write window in red."""
    if body.n > svc.settings.max_n_animate:
        raise over_limit("n", body.n, svc.settings.max_n_animate, "animation limit")
    seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
    served = await svc.served()
    eps = served.runner.latents(body.n, seed, body.temperature)
    gif = await asyncio.get_running_loop().run_in_executor(
        None, lambda: _draw_gif(served, served.runner.animate(eps)))
    return Response(gif, media_type="image/gif", headers={"X-Seed": str(seed)})


@router.post("/score", response_model=ScoreResponse, openapi_extra=json_or_png_body(
    ScoreRequest, "images as JSON arrays, or one PNG or JPEG of any size as the body (resized to the model's)"),
    responses=responses(401, 404, 408, 413, 415, 422))
async def score(request: Request, svc: Replica,
                iw_samples: int = Query(0, ge=0, le=1000, description="k > 0 adds the importance-weighted "
                                                                      "bound with k samples (at most "
                                                                      "max_iw_samples)"),
                seed: int = Query(0, ge=0, le=MAX_SEED, description="seeds the posterior samples")):
    """The likelihood of images: per image the NLL bound (and with `iw_samples` the tighter
    importance-weighted bound), in nats and in bits per dimension."""
    if iw_samples > svc.settings.max_iw_samples:
        raise over_limit("iw_samples", iw_samples, svc.settings.max_iw_samples, loc=("query",))
    served = await svc.served()
    pixels, resized_from = _images(served, await request.body(), request.headers.get("content-type", ""),
                                   ScoreRequest, "images", svc.settings.max_n_score)
    likelihood = served.model.config.likelihood
    scores = await served.runner.score_batch((as_model_input(pixels, likelihood), iw_samples, seed))
    return {"model": served.name, "likelihood": likelihood, "iw_samples": iw_samples, "scores": scores,
            "resized_from": list(resized_from) if resized_from else None}


@router.post("/reconstruct", openapi_extra=json_or_png_body(
    ReconstructRequest, "one image as a JSON array, or one PNG or JPEG of any size as the body (resized to the "
                        "model's; the X-Resized-From header says from what)"),
    responses=responses(401, 404, 408, 413, 415, 422, ok={"content": {"image/gif": {}},
                                                     "description": "an animated GIF"}))
async def reconstruct(request: Request, svc: Replica,
                      seed: int = Query(0, ge=0, le=MAX_SEED, description="seeds the posterior samples")):
    """A GIF of DRAW reconstructing your image step by step: the read window in green, the write window
    in red (the paper's figure 3)."""
    served = await svc.served()
    pixels, resized_from = _images(served, await request.body(), request.headers.get("content-type", ""),
                                   ReconstructRequest, "image", 1)
    x = as_model_input(pixels, served.model.config.likelihood)
    gif = await asyncio.get_running_loop().run_in_executor(
        None, lambda: _draw_gif(served, served.runner.reconstruct(x, seed), scale=6, reading=True))
    said = {"X-Resized-From": f"{resized_from[0]}x{resized_from[1]}"} if resized_from else {}
    return Response(gif, media_type="image/gif", headers=said)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/models", responses=responses(401))
async def models(svc: Replica) -> dict[str, Any]:
    """The models this service offers, each with its architecture, image shape and how it scored; choose
    one per request with the `serve_multiplexed_model_id` header (the default without it)."""
    return {"default": svc.default, "header": MODEL_HEADER, "models": list(svc.cards.values())}


@router.get("/info", responses=responses(401, 404))
async def info(svc: Replica) -> dict[str, Any]:
    """The model a request gets (the header's, or the default), how it scored, and how this replica has
    batched for it so far; where it came from (its storage path) only when the service has a bearer
    token, which this request then carried."""
    served = await svc.served()
    stats = served.runner.stats
    answer = {
        **svc.cards[served.name], "models": list(svc.uris),
        "device": str(svc.device), "precision": svc.precision, "settings": svc.settings.to_dict(),
        "stats": {**stats, "batch_sizes": {str(k): v for k, v in sorted(stats["batch_sizes"].items())},
                  "loads": svc.loads.get(served.name, 0)},  # times this replica loaded the model
        "time": time.time(), "auth": svc.secured,
    }
    if svc.secured:
        answer["checkpoint"] = served.checkpoint_uri
        if served.name == svc.default:
            answer["search"] = {k: svc.record[k] for k in ("search", "trial_id", "metric", "value",
                                                            "eval_split") if k in svc.record} or None
    return answer
