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
