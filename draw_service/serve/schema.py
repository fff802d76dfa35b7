"""The HTTP API's request and response shapes (FastAPI turns them into the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**63 - 1


class SampleRequest(BaseModel):
    """Draw `n` new images from the model's prior."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(16, ge=1, description="how many images (at most the deployment's max_n)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="same seed, same images; omitted: a random seed, returned in the answer")
    temperature: float = Field(1.0, gt=0, le=10, description="scales the prior's standard deviation")
    format: Literal["png", "json"] | None = Field(None, description="overrides the Accept header")


class AnimateRequest(BaseModel):
    """A GIF of the canvas being drawn, step by step, with the write window on each frame."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(16, ge=1, description="how many images to draw side by side (at most max_n_animate)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    temperature: float = Field(1.0, gt=0, le=10)


class SampleResponse(BaseModel):
    seed: int
    n: int
    shape: list[int] = Field(description="(n, channels, height, width)")
    images: list = Field(description="pixel intensities in [0, 1], nested as `shape`")


class ServeSettings(BaseModel):
    """Runtime settings (Serve's user_config): changeable without restarting replicas."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(32, ge=1, description="requests decoded together in one pass")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10, description="how long a batch waits to fill")
    max_n: int = Field(64, ge=1, le=1024, description="images per /sample request")
    max_n_animate: int = Field(16, ge=1, le=256, description="images per /animate request")
