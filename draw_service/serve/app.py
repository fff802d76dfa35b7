"""Batched sampling over HTTP: a Ray Serve deployment with a FastAPI ingress.

The replica loads one checkpoint at start (a checkpoint URI, local or S3, or a search's best record)
and keeps the model on the GPU when it has one. Concurrent /sample requests are gathered by
`@serve.batch` into one decoder pass whatever their sizes; each request's latents come from its own
seeded generator, so a seed gives the same images batched or alone. Every size is bounded (n, body
size, batch size), so no request can make a replica allocate without limit.

    serve run draw_service.serve.app:build_app checkpoint=s3://bucket/runs/x/checkpoint_0010000
    serve deploy cluster/serve.yaml            # the config file; a RayService embeds the same
"""


import asyncio
import collections
import logging
import secrets
import time
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from ray import serve

from .. import best as best_record
from .. import checkpoint
from ..device import pick_device
from ..model.cuda_graph_decoder import GraphedDecoder
from ..viz import drawing_frames, gif_bytes, grid_image, png_bytes
from .config import ServeSettings
from .schema import AnimateRequest, SampleRequest, SampleResponse

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096  # every valid request is a few dozen bytes

api = FastAPI(title="draw-service", version="1",
              description="Images from a trained DRAW model (Gregor et al., 2015), drawn step by step.")


@api.middleware("http")
async def limit_body(request: Request, call_next):
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
        return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
    if request.method == "POST" and not request.headers.get("content-type", "").startswith("application/json"):
        # Every body this API takes is JSON: `curl -d` (form-encoded by default) and clients that send no
        # type mean JSON too, so read it as JSON rather than refuse it.
        headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
        request.scope["headers"] = [*headers, (b"content-type", b"application/json")]
    return await call_next(request)


def _wanted_format(body_format: str | None, accept: str | None) -> str:
    if body_format:
        return body_format
    accept = (accept or "*/*").lower()
    if "image/png" in accept:
        return "png"
    if "application/json" in accept or "*/*" in accept or "application/*" in accept:
        return "json"
    raise HTTPException(406, f"cannot answer with {accept!r}: ask for image/png or application/json")


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
        self.device = pick_device(device)
        self.model, state = checkpoint.load_model(checkpoint_uri, self.device)
        # On a GPU, decoding replays CUDA graphs (launches, not maths, dominate small decodes there).
        self.graphed = GraphedDecoder(self.model) if self.device.type == "cuda" else None
        self.checkpoint_uri, self.step, self.metrics = checkpoint_uri, state["step"], state.get("metrics", {})
        self.settings = ServeSettings()
        self.stats = {"requests": 0, "images": 0, "batches": 0, "largest_batch": 0,
                      "batch_sizes": collections.Counter()}
        log.info("serving %s (step %d) on %s", checkpoint_uri, self.step, self.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        settings = ServeSettings.from_dict(user_config)
        ctx = serve.get_replica_context()
        max_ongoing = getattr(getattr(ctx, "_deployment_config", None), "max_ongoing_requests", None)
        if max_ongoing is not None and settings.max_batch_size > max_ongoing:
            raise ValueError(f"max_batch_size {settings.max_batch_size} exceeds max_ongoing_requests {max_ongoing}: "
                             f"a batch could never fill; raise max_ongoing_requests or lower max_batch_size")
        self.settings = settings
        self._decode_batch.set_max_batch_size(settings.max_batch_size)
        self._decode_batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    # --- the batched decoder -------------------------------------------------------------------
    def _latents(self, n: int, seed: int, temperature: float) -> torch.Tensor:
        """The request's own latents (T, n, z): the same seed gives the same images as `draw-service sample`."""
        return self.model.prior_latents(n, seed, temperature)

    @torch.inference_mode()
    def _decode(self, eps: torch.Tensor) -> torch.Tensor:
        eps = eps.to(self.device)
        images = self.graphed(eps) if self.graphed is not None else self.model.decode(eps)[0]
        return images.float().cpu()

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _decode_batch(self, jobs: list[tuple[int, int, float]]) -> list[torch.Tensor]:
        eps = torch.cat([self._latents(*job) for job in jobs], dim=1)  # (T, Σn, z)
        # Decode off the event loop, so requests keep arriving (and the next batch fills) meanwhile.
        images = await asyncio.get_running_loop().run_in_executor(None, self._decode, eps)
        sizes = [n for n, _, _ in jobs]
        self.stats["batches"] += 1
        self.stats["requests"] += len(jobs)
        self.stats["images"] += sum(sizes)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
        self.stats["batch_sizes"][len(jobs)] += 1
        return list(images.split(sizes))

    # --- HTTP ----------------------------------------------------------------------------------
    @api.post("/sample", response_model=SampleResponse,
              responses={200: {"content": {"image/png": {}}, "description": "JSON arrays, or a PNG grid"}})
    async def sample(self, body: SampleRequest, request: Request):
        """New images from the prior: JSON arrays, or a PNG grid with `Accept: image/png`."""
        fmt = _wanted_format(body.format, request.headers.get("accept"))
        if body.n > self.settings.max_n:
            raise HTTPException(422, f"n = {body.n} is over this deployment's limit of {self.settings.max_n}")
        seed = body.seed if body.seed is not None else secrets.randbelow(2**63)
        images = await self._decode_batch((body.n, seed, body.temperature))
        if fmt == "png":
            return Response(png_bytes(grid_image(images)), media_type="image/png", headers={"X-Seed": str(seed)})
        # A JSONResponse skips re-validating thousands of floats against the response model (documented only).
        return JSONResponse({"seed": seed, "n": body.n, "shape": list(images.shape),
                             "images": np.round(images.numpy().astype(np.float64), 5).tolist()})

    @api.post("/animate", responses={200: {"content": {"image/gif": {}}, "description": "an animated GIF"}})
    async def animate(self, body: AnimateRequest):
        """A GIF of the canvas being drawn over the T steps, with each step's write window in red."""
        if body.n > self.settings.max_n_animate:
            raise HTTPException(422, f"n = {body.n} is over this deployment's animation limit of "
                                     f"{self.settings.max_n_animate}")
        seed = body.seed if body.seed is not None else secrets.randbelow(2**63)
        eps = self._latents(body.n, seed, body.temperature)

        def draw() -> bytes:
            with torch.inference_mode():
                _, rec = self.model.decode(eps.to(self.device), record=True)
            cfg = self.model.config
            return gif_bytes(drawing_frames(rec, cfg.write_n if cfg.attention else None))

        gif = await asyncio.get_running_loop().run_in_executor(None, draw)
        return Response(gif, media_type="image/gif", headers={"X-Seed": str(seed)})

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/info")
    async def info(self) -> dict[str, Any]:
        """The model, where it came from, how it scored, and how this replica has batched so far."""
        return {
            "model": self.model.config.to_dict(), "image_shape": list(self.model.image_shape),
            "checkpoint": self.checkpoint_uri, "step": self.step,
            "metrics": {k: v for k, v in self.metrics.items() if isinstance(v, (int, float, str))},
            "search": {k: self.record[k] for k in ("search", "trial_id", "metric", "value", "eval_split")
                       if k in self.record} or None,
            "device": str(self.device), "settings": self.settings.to_dict(),
            "stats": {**self.stats, "batch_sizes": {str(k): v for k, v in sorted(self.stats["batch_sizes"].items())}},
            "time": time.time(),
        }


class AppArgs(BaseModel):
    """Arguments of `build_app`, as given to `serve run` (key=value) or in a Serve config file."""

    checkpoint: str | None = None
    best: str | None = None
    device: str = "auto"


def build_app(args: AppArgs) -> serve.Application:
    """The Serve application: `serve run draw_service.serve.app:build_app best=s3://.../best.json`."""
    return DRAWService.bind(checkpoint_uri=args.checkpoint, best=args.best, device=args.device)

