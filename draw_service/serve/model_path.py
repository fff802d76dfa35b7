"""The model named in the path: `POST /models/{name}/sample` is `POST /sample` for the model `name`, a form a
browser's link and a plain curl can use without setting Serve's `serve_multiplexed_model_id` header.

A pure ASGI middleware, outside the request guard: the guard and the routes see `/sample` (its body limits,
its handler), and the name travels in a context variable that `DRAWService.served` reads. The name is only
ever looked up among the service's models (`served` answers 404 for any other), never used as a path.

A request with the header is routed by Serve to a replica that already holds its model; one with the
path form is answered by any replica, which loads the model on first use.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from .guard import Receive, Scope, Send

MODEL_ROUTES = ("/sample", "/animate", "/score", "/reconstruct", "/info")  # those that serve one model
PATH_MODEL: ContextVar[str | None] = ContextVar("path_model", default=None)
_FORM = re.compile(r"/models/(?P<name>.+)(?P<route>" + "|".join(map(re.escape, (*MODEL_ROUTES, "/openapi.json")))
                   + ")")


def named_in_path() -> str | None:
    """The model this request names in its path, if it does (a function: Serve pickles the deployment, which
    may refer to it, and a ContextVar does not pickle)."""
    return PATH_MODEL.get()


class ModelPath:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _FORM.fullmatch(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            return await self.app(scope, receive, send)
        route = match["route"]
        token = PATH_MODEL.set(match["name"])
        try:
            return await self.app({**scope, "path": route, "raw_path": route.encode()}, receive, send)
        finally:
            PATH_MODEL.reset(token)
