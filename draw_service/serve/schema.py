"""The HTTP API's request and response shapes (FastAPI turns them into the OpenAPI docs at /docs).

Strict types: `"seed": false` is not 0 and `"n": "3"` is not 3. Sizes whose limits are runtime settings
(`ServeSettings`) are checked by the routes against the deployment's own limits, which the published
schema states (`openapi.py`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_SEED = 2**53 - 1  # the largest integer every JSON reader holds exactly
STRICT = ConfigDict(extra="forbid", strict=True)


def _integral(value: object) -> object:
    # JSON Schema's "integer" includes 3.0: take it, as the published schema promises; still no 3.5, "3" or true.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Int = Annotated[int, BeforeValidator(_integral)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED), BeforeValidator(_integral)]  # bounds first: kept in a union


class SampleRequest(BaseModel):
    """Draw `n` new images from the model's prior."""

    model_config = STRICT

    # No upper bound here: the deployment's own limit (its max_n, in its published schema) is the one a client
    # meets, with one message for any n above it.
    n: Int = Field(16, ge=1, description="how many images (at most the deployment's max_n)")
    seed: Seed | None = Field(None,
                              description="same seed, same images (as `draw-service sample --seed`); omitted: a "
                                         "random seed, returned in the answer")
    temperature: float = Field(1.0, gt=0, le=10, description="scales the prior's standard deviation")
    format: Literal["png", "json", "u8"] | None = Field(
        None, description="json: arrays of floats in [0, 1]; u8: the pixels as base64 bytes (0..255, shape in the "
                          "answer), about 20 times smaller; png: one grid picture. Overrides the Accept header")


class AnimateRequest(BaseModel):
    """A GIF of the canvas being drawn, step by step, with the write window on each frame."""

    model_config = STRICT

    n: Int = Field(16, ge=1, description="how many images to draw side by side (at most max_n_animate)")
    seed: Seed | None = None
    temperature: float = Field(1.0, gt=0, le=10)


class ScoreRequest(BaseModel):
    """Images to score, as arrays (or send one PNG or JPEG of any size as the body, `Content-Type: image/png` or
    `image/jpeg`, resized to the model's); `iw_samples` and
    `seed` are query parameters either way."""

    model_config = STRICT

    # Numbers all the way down, strictly: a JSON `false` is not a pixel of 0 (the shape is checked after).
    images: list[list[list[list[float]]]] = Field(
        description="pixel values in [0, 1], nested (n, channels, height, width); a Bernoulli model scores them "
                    "binarised at 0.5, the 8-bit ones at the nearest 8-bit value")


class ImageScore(BaseModel):
    nll_bound: float = Field(description="the negative ELBO, nats")
    bits_per_dim: float
    iwae_bound: float | None = Field(None, description="the importance-weighted bound, nats (with iw_samples)")
    iwae_bits_per_dim: float | None = None


class ScoreResponse(BaseModel):
    likelihood: str = Field(description="bernoulli (binarised pixels), or logistic, logistic-scale or "
                                        "logistic-mixture (8-bit pixels, a true likelihood in bits/dim)")
    iw_samples: int
    scores: list[ImageScore]
    model: str = Field(description="the model that scored them (GET /models)")
    resized_from: list[int] | None = Field(None, description="an uploaded picture's own [height, width], where it "
                                                            "was resized to the model's; null otherwise")


class ReconstructRequest(BaseModel):
    """One image to reconstruct, as an array (or send a PNG or JPEG of any size as the body, `Content-Type:
    image/png` or `image/jpeg`, resized to the model's)."""

    model_config = STRICT

    image: list[list[list[float]]] = Field(description="pixel values in [0, 1], nested (channels, height, width)")


class SampleResponse(BaseModel):
    seed: int
    n: int
    shape: list[int] = Field(description="(n, channels, height, width)")
    images: list | None = Field(None, description="format json: pixel intensities in [0, 1], nested as `shape`")
    u8: str | None = Field(None, description="format u8: base64 of the uint8 pixels, C order, `shape`")
