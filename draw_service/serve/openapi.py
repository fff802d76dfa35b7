"""The published OpenAPI schema, narrowed to one deployment: its runtime limits, its model's image shape,
and its bearer token where it has one. Clients and Schemathesis then see exactly what the service takes."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .config import ServeSettings
from .schema import ReconstructRequest, ScoreRequest


def narrowed_schema(api: FastAPI, settings: ServeSettings, shape: tuple[int, int, int],
                    secured: bool) -> dict[str, Any]:
    schema = copy.deepcopy(get_openapi(title=api.title, version=api.version, description=api.description,
                                       routes=api.routes))
    for model in (ScoreRequest, ReconstructRequest):  # bodies the handlers read themselves (JSON or PNG)
        schema["components"]["schemas"][model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}")
    props = lambda name: schema["components"]["schemas"][name]["properties"]  # noqa: E731
    props("SampleRequest")["n"]["maximum"] = settings.max_n
    props("AnimateRequest")["n"]["maximum"] = settings.max_n_animate
    C, H, W = shape
    pixel = {"type": "number", "minimum": 0, "maximum": 1}
    row = {"type": "array", "items": pixel, "minItems": W, "maxItems": W}
    plane = {"type": "array", "items": row, "minItems": H, "maxItems": H}
    image = {"type": "array", "items": plane, "minItems": C, "maxItems": C}
    props("ScoreRequest")["images"] = {"type": "array", "items": image, "minItems": 1,
                                       "maxItems": settings.max_n_score, "description": "(n, C, H, W) in [0, 1]"}
    props("ReconstructRequest")["image"] = {**image, "description": "(C, H, W) in [0, 1]"}
    for op in schema["paths"]["/score"]["post"]["parameters"]:
        if op["name"] == "iw_samples":
            op["schema"]["maximum"] = settings.max_iw_samples
    if secured:  # say how to authenticate, on every route that needs it
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, ops in schema["paths"].items():
            if path != "/healthz":
                for op in ops.values():
                    op["security"] = [{"bearer": []}]
    return schema
