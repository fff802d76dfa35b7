"""The published OpenAPI schema, narrowed to one deployment and one of its models: the runtime limits, that
model's image shape and name (the `serve_multiplexed_model_id` header), and the bearer token where there is
one. Clients and Schemathesis then see exactly what the service takes; `/openapi.json` asked with the header
gives another model's schema."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .config import ServeSettings
from .model_path import MODEL_ROUTES
from .schema import ReconstructRequest, ScoreRequest


def narrowed_schema(api: FastAPI, settings: ServeSettings, shape: tuple[int, int, int], secured: bool,
                    model: str, models: list[str], header: str) -> dict[str, Any]:
    """The schema for `model` among `models` (the service's, the default first), picked by `header`."""
    schema = copy.deepcopy(get_openapi(title=api.title, version=api.version, description=api.description,
                                       routes=api.routes))
    for body in (ScoreRequest, ReconstructRequest):  # bodies the handlers read themselves (JSON or a picture)
        schema["components"]["schemas"][body.__name__] = body.model_json_schema(
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
    others = [m for m in models if m != model]
    # (an empty header names no model, as none does: the default's schema takes it)
    chooser = {"name": header, "in": "header", "required": False,
               "schema": {"type": "string", "enum": [model, ""] if model == models[0] else [model]},
               "description": f"the model: {model}, this schema's"
                              + (" (the default, without the header)" if model == models[0] else "")
                              + (f"; this service also offers {', '.join(others)}, each with its own schema "
                                 f"(GET /openapi.json with this header)" if others else "")}
    for path in MODEL_ROUTES:
        for op in schema["paths"][path].values():
            op.setdefault("parameters", []).append(chooser)
    if secured:  # say how to authenticate, on every route that needs it
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, ops in schema["paths"].items():
            if path != "/healthz":
                for op in ops.values():
                    op["security"] = [{"bearer": []}]
    return schema
