"""What a request must satisfy before any handler sees it: a pure ASGI middleware in front of the app.

- The body arrives within `BODY_TIMEOUT_S` and stays under its route's size limit, whatever its framing
  (Content-Length or chunked): bytes are counted as they are read, so a huge or a trickling body is cut
  off (413, 408) without being buffered, and a slow client cannot hold a replica's request slots.
- JSON bodies are parsed strictly before FastAPI sees them: NaN and Infinity are not JSON, and an
  unreadable body gets the same documented 422 as any invalid field. Bodies sent without a JSON content
  type (what `curl -d` does) are read as JSON on the JSON routes.
- With a bearer token configured (`DRAW_SERVE_TOKEN`, from a Kubernetes Secret on a cluster), every route
  but the health check, the page and its static files needs `Authorization: Bearer <token>`.

Errors are JSON in FastAPI's own shape, `{"detail": [{"loc", "msg", "type"}]}`, and never echo the input.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from collections.abc import Awaitable, Callable

BODY_TIMEOUT_S = 5.0  # the whole body; every valid request to this API is tiny or a small PNG
JSON_LIMIT = 4096  # bytes: every JSON request but /score's is a few dozen bytes
UPLOAD_LIMIT = 4 * 1024 * 1024  # bytes: an image for /score or /reconstruct, or /score's arrays
UPLOAD_ROUTES = ("/score", "/reconstruct")
OPEN_ROUTES = ("/healthz", "/", "/docs", "/openapi.json", "/favicon.ico")  # no token needed
TOKEN_ENV = "DRAW_SERVE_TOKEN"

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def error_body(status_type: str, msg: str, loc: tuple = ("body",)) -> bytes:
    return json.dumps({"detail": [{"loc": list(loc), "msg": msg, "type": status_type}]}).encode()


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def strict_json(body: bytes):
    """The JSON value of `body`, refusing NaN and ±Infinity (Python's json accepts them; JSON does not)."""
    return json.loads(body, parse_constant=_reject_constant)


def token_from_env() -> str | None:
    """This process's bearer token (`DRAW_SERVE_TOKEN`), or None for an open service."""
    return os.environ.get(TOKEN_ENV) or None


class RequestGuard:
    def __init__(self, app, token: str | None | Callable[[], str | None] = None):
        self.app = app
        # A function is asked once, here: Starlette builds its middleware in the serving process (a Serve
        # replica, at its first request), so `token_from_env` reads that process's environment.
        self.token = token() if callable(token) else token

    def _authorised(self, scope: Scope) -> bool:
        expected = self.token
        if not expected:
            return True
        path = scope["path"]
        if path in OPEN_ROUTES or path.startswith("/static/"):
            return True
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self._authorised(scope):
            return await respond(send, 401, error_body("unauthorized", "a bearer token is required: "
                                                       "Authorization: Bearer <token>", ("header", "authorization")),
                                 [(b"www-authenticate", b"Bearer")])
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = UPLOAD_LIMIT if scope["path"] in UPLOAD_ROUTES else JSON_LIMIT
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared and (not declared.isdigit() or int(declared) > limit):
            return await respond(send, 413, error_body("too_large", f"request body over {limit} bytes"))
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BODY_TIMEOUT_S
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                return await respond(send, 408, error_body("timeout", f"the request body did not arrive within "
                                                                      f"{BODY_TIMEOUT_S:g} s"))
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                return await respond(send, 413, error_body("too_large", f"request body over {limit} bytes"))
            if not message.get("more_body"):
                break
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if content_type in ("", "application/json", "application/x-www-form-urlencoded", "text/plain"):
            if body.strip():
                try:
                    strict_json(bytes(body))
                except (ValueError, UnicodeDecodeError) as err:
                    return await respond(send, 422, error_body("json_invalid", f"JSON decode error: "
                                                                               f"{str(err)[:200]}"))
            # Every body the JSON routes take is JSON: read it as such whatever the client labelled it.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}

        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
