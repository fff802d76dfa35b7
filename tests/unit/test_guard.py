"""The request guard in front of the HTTP API, on a bare ASGI app: limits, strict JSON, the bearer token."""

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from draw_service.serve import guard
from draw_service.serve.guard import RequestGuard


async def echo_size(request: Request):
    body = await request.body()
    return JSONResponse({"bytes": len(body), "type": request.headers.get("content-type")})


def client(token=None):
    app = Starlette(routes=[Route(p, echo_size, methods=["GET", "POST"]) for p in ("/sample", "/score", "/healthz")])
    return TestClient(RequestGuard(app, token=token))


def detail(r):
    body = r.json()
    assert isinstance(body["detail"], list) and {"loc", "msg", "type"} <= set(body["detail"][0])
    return body["detail"][0]["msg"]


def test_bodies_over_the_limit_are_refused_however_they_are_framed():
    c = client()
    r = c.post("/sample", content=b"1" * 5000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "over 4096 bytes" in detail(r)

    def chunks():  # no Content-Length: chunked transfer; the limit is counted while reading
        for _ in range(8 * 1024):
            yield b" " * 1024
    r = c.post("/sample", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 300  # and nothing of the body is echoed
    assert c.post("/score", content=b"x" * 100_000, headers={"Content-Type": "image/png"}).json()["bytes"] == 100_000


@pytest.mark.parametrize("text", ['{"n": NaN}', '{"temperature": Infinity}', '{"t": -Infinity}', "{not json", "[1,"])
def test_json_that_is_not_json_is_a_422_in_the_documented_shape(text):
    r = client().post("/sample", content=text, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON decode error" in detail(r)


def test_a_body_labelled_as_a_form_is_read_as_json():
    r = client().post("/sample", content='{"n": 2}', headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["type"] == "application/json"


def test_a_body_that_trickles_in_is_cut_off(monkeypatch):
    monkeypatch.setattr(guard, "BODY_TIMEOUT_S", 0.3)
    app = RequestGuard(echo_size)
    sent = []

    async def receive():
        import asyncio

        await asyncio.sleep(0.2)  # one byte every 0.2 s
        return {"type": "http.request", "body": b" ", "more_body": True}

    async def send(message):
        sent.append(message)

    import asyncio

    scope = {"type": "http", "method": "POST", "path": "/sample", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 408 and b"did not arrive within" in sent[1]["body"]


def test_a_token_guards_everything_but_the_health_check():
    c = client(token="s3cr3t-token")
    assert c.get("/healthz").status_code == 200
    r = c.post("/sample", json={"n": 1})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "bearer token" in detail(r)
    assert c.post("/sample", json={"n": 1}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/sample", json={"n": 1}, headers={"Authorization": "Bearer s3cr3t-token"}).status_code == 200
    assert client(token=None).post("/sample", json={"n": 1}).status_code == 200
    assert "s3cr3t" not in json.dumps(r.json())
