"""How the HTTP API answers what it will not do: one error shape (FastAPI's `{"detail": [...]}`, never
echoing the input), the documented statuses of each route, and the answer format a request asks for."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from .guard import error_body

ERRORS = {401: "a bearer token is required", 406: "the Accept header asks for a format this route cannot answer",
          404: "no model of that name here (GET /models lists them)", 408: "the body did not arrive in time",
          413: "the body or the image is too large",
          415: "the body is not an image or JSON", 422: "the request is invalid"}


class ApiError(Exception):
    def __init__(self, status: int, kind: str, msg: str, loc: tuple = ("body",)):
        super().__init__(msg)
        self.status, self.kind, self.msg, self.loc = status, kind, msg, loc


def install(api: FastAPI) -> None:
    """`api` answers ApiError and invalid requests in the one error shape."""

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return Response(error_body(err.kind, err.msg, err.loc), status_code=err.status, media_type="application/json")

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        # FastAPI's own shape without the offending input: nothing large, and no NaN, is ever echoed back.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"), "type": e.get("type", "invalid")}
                  for e in err.errors()]
        return JSONResponse({"detail": detail}, status_code=422)


def over_limit(name: str, value: int, limit: int, what: str = "limit", loc: tuple = ("body",)) -> ApiError:
    """A size over this deployment's runtime limit (the schema's own bounds are the widest allowed)."""
    return ApiError(422, "less_than_equal", f"{name} = {value} is over this deployment's {what} of {limit}",
                    (*loc, name))


def wanted_format(body_format: str | None, accept: str | None) -> str:
    if body_format:
        return body_format
    accept = (accept or "*/*").lower()
    if "image/png" in accept:
        return "png"
    if "application/json" in accept or "*/*" in accept or "application/*" in accept:
        return "json"
    raise ApiError(406, "not_acceptable", "cannot answer with that Accept header: ask for image/png or "
                                          "application/json", ("header", "accept"))


def responses(*statuses: int, ok: dict | None = None) -> dict:
    """A route's documented answers: these error statuses, and its own 200 where it is not plain JSON."""
    out = {s: {"description": ERRORS[s], "content": {"application/json": {}}} for s in statuses}
    if ok:
        out[200] = ok
    return out


def json_or_png_body(model: type[BaseModel], description: str) -> dict:
    """The request body of a route that reads it itself: the JSON model, or one PNG or JPEG picture."""
    return {"requestBody": {"required": True, "description": description, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}
