"""What the server refuses, and how: every error is JSON, {"error": {"code", "type", "message"[, "limit", "max"]}}.

`RequestError` is raised by the routes; `add_error_handlers` turns it, pydantic's validation errors, Starlette's
404/405 and any bug into that shape; `BodyLimit` refuses an oversized body before anything parses it.
tests/test_serve.py and tests/test_fuzz.py check every path (`python -m pytest -q tests/test_serve.py`).
"""

import json

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llmclf.config import flag


class RequestError(Exception):
    """A request the server refuses; `limit` names the ServeArgs field that refused it."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request", limit: str | None = None,
                 maximum: int | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.limit, self.maximum = status, message, kind, limit, maximum
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"code": self.status, "type": self.kind, "message": self.message}
        if self.limit:
            error |= {"limit": self.limit, "max": self.maximum}
        return {"error": error}


def limit_exceeded(limit: str, maximum: int, message: str) -> RequestError:
    return RequestError(413, f"{message}; the limit is {limit} = {maximum} ({flag(limit)}).", "limit_exceeded",
                        limit, maximum)


UNION_MEMBERS = ("str", "list[str]")


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic's errors for a request body: what is wrong, and where.

    >>> validation_message([{"type": "missing", "loc": ("body", "input"), "msg": "Field required"}])
    'input: Field required.'
    """
    if not errors:
        return "body: invalid request."
    first = errors[0]
    if first["type"] == "json_invalid":
        at = [p for p in first["loc"] if isinstance(p, int)]
        return f"body: not valid JSON ({first['msg']}{f' at character {at[0]}' if at else ''}); send a JSON object."
    if [p for p in first["loc"] if p != "body"] == [] or first["type"] == "model_attributes_type":
        return "body: expected a JSON object, sent with Content-Type: application/json."
    parts = []
    for error in errors[:3]:
        loc = [p for p in error["loc"] if p != "body"]
        if any(p in UNION_MEMBERS for p in loc):  # `str | list[str]` fails as both; say it once
            message = f"{loc[0]}: expected a string or a list of strings."
        else:
            where = str(loc[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
            message = f"{where}: {error['msg']}."
        if message not in parts:
            parts.append(message)
    return " ".join(parts)


def check_texts(texts: list[str], args, what: str) -> None:
    """Refuse (with the limit's name) what the server will not classify under `args` (a ServeArgs): nothing,
    too many, too long, broken."""
    if not texts:
        raise RequestError(422, f"{what}: no texts; give at least one.")
    if len(texts) > args.max_texts_per_request:
        raise limit_exceeded("max_texts_per_request", args.max_texts_per_request, f"{what}: {len(texts)} texts")
    for i, text in enumerate(texts):
        if len(text) > args.max_chars_per_text:
            raise limit_exceeded("max_chars_per_text", args.max_chars_per_text,
                                 f"{what}[{i}]: {len(text)} characters")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON may escape a lone surrogate; no tokenizer takes it
            raise RequestError(422, f"{what}[{i}]: not valid Unicode (lone surrogate at character {exc.start}); "
                               "send UTF-8 text.") from None


# --- exception handlers ------------------------------------------------------------------------------------


async def request_error(request, exc: RequestError):
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def invalid_body(request, exc: RequestValidationError):
    # The echoed input could be megabytes; the message says what was wrong and where.
    details = [{k: v for k, v in e.items() if k not in ("input", "url", "ctx")} for e in exc.errors()]
    return JSONResponse({"error": {"code": 422, "type": "invalid_request", "message": validation_message(details),
                                   "details": jsonable_encoder(details)}}, status_code=422)


async def http_error(request, exc: HTTPException):
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # FastAPI's words
        return JSONResponse({"error": {"code": 422, "type": "invalid_request",
                                       "message": "body: cannot be parsed; send a UTF-8 JSON object."}},
                            status_code=422)
    return JSONResponse({"error": {"code": exc.status_code, "type": "http_error", "message": str(exc.detail)}},
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def server_error(request, exc: Exception):  # a bug: answer 500 and keep serving
    return JSONResponse({"error": {"code": 500, "type": "server_error", "message": f"internal error "
                                   f"({type(exc).__name__}); the server's log has the traceback."}},
                        status_code=500)


def add_error_handlers(app) -> None:
    """Every refusal and failure of `app` answered in the one JSON shape."""
    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, server_error)


# --- the body limit ----------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: reads a request body up to `max_bytes` and answers 413 past it, before any parsing
    (a chunked body has no Content-Length, so the bytes are counted as they come); a JSON body that is not
    UTF-8 gets 422."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, int(declared))
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._refuse(send, len(body))
            if not message.get("more_body", False):
                break
        content_type = dict(scope["headers"]).get(b"content-type", b"application/json")
        if content_type.startswith(b"application/json"):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:  # JSON is UTF-8 (RFC 8259); say so rather than FastAPI's 400
                error = RequestError(422, f"body: not valid UTF-8 (byte {exc.start}); send UTF-8 JSON.")
                return await _send_json(send, error.status, error.body())
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send, size: int):
        error = limit_exceeded("max_body_bytes", self.max_bytes, f"request body: {size} bytes or more")
        await _send_json(send, error.status, error.body(), close=True)


async def _send_json(send, status: int, body: dict, close: bool = False) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:  # the rest of the body was not read, so the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
