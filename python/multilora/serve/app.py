"""The FastAPI application: OpenAI routes, adapter loading, health, metrics, API key and body-size guard.

``create_app(backend, api_key=..., max_body_bytes=...)`` serves any *backend* with the methods of
:class:`LocalBackend` (one ModelHost in this process) — the Ray Serve ingress (ray_serve.py) is another.

Every error is answered in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad body,
401 without the API key, 404 for an unknown model/route, 413 for a body over the limit, 429 when the engine queue is
full, 503 while shutting down; 500 only for a fault of the server itself.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any, AsyncIterator, Dict, List, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .host import Event, ModelHost
from .metrics import CONTENT_TYPE_LATEST
from .protocol import APIError, error_body

__all__ = ["create_app", "LocalBackend"]

log = logging.getLogger("multilora.serve")

_OPEN_PATHS = ("/health",)
_DISCONNECT_POLL_S = 0.25


class _BodyTooLarge(Exception):
    pass


class _Guard:
    """ASGI middleware: the bearer API key (constant-time compare) on every path but /health, and the body-size limit
    (the declared Content-Length first, then the bytes actually received)."""

    def __init__(self, app: Any, api_key: Optional[str], max_body_bytes: int) -> None:
        self.app = app
        self.key = ("Bearer " + api_key).encode() if api_key else None
        self.limit = int(max_body_bytes)

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.key is not None and scope.get("path") not in _OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.key):
                await _send_json(
                    send,
                    401,
                    error_body(
                        "missing or wrong API key (Authorization: Bearer KEY)",
                        "authentication_error",
                        code="invalid_api_key",
                    ),
                    extra=[(b"www-authenticate", b"Bearer")],
                )
                return
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                too_big = False
            if too_big:
                await _send_json(send, 413, _too_large(self.limit))
                return
        seen = 0
        limit = self.limit

        async def counted() -> Dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(limit)
            return message  # type: ignore[no-any-return]

        await self.app(scope, counted, send)


def _too_large(limit: int) -> Dict[str, Any]:
    return error_body(
        f"the request body is over the limit of {limit} bytes", "invalid_request_error", code="request_too_large"
    )


async def _send_json(send: Any, status: int, body: Dict[str, Any], extra: Optional[List[Any]] = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + list(extra or [])})
    await send({"type": "http.response.body", "body": data})


class LocalBackend:
    """A ModelHost in this process, behind the interface the app serves."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host

    async def models(self) -> List[Dict[str, Any]]:
        return self.host.model_cards()

    def generate(self, kind: str, body: Any) -> AsyncIterator[Event]:
        return self.host.generate(kind, body)

    async def load_adapter(self, body: Any) -> str:
        return self.host.load_adapter(body)

    async def unload_adapter(self, body: Any) -> str:
        return self.host.unload_adapter(body)

    async def metrics(self) -> bytes:
        return self.host.metrics.render()

    async def health(self) -> bool:
        return not self.host.closed

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.host.close)


def _sse(body: Dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


async def _json_body(request: Request) -> Any:
    try:
        raw = await request.body()
    except _BodyTooLarge as e:
        raise APIError(413, _too_large(e.args[0])["error"]["message"], code="request_too_large") from None
    if not raw:
        raise APIError(400, "the request has no body (a JSON object is expected)")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise APIError(400, f"the body is not valid JSON: {e}") from None


async def _first_event(request: Request, events: AsyncIterator[Event]) -> Optional[Event]:
    """The first event, or None when the client went away while it was being produced (the generation is cancelled:
    a non-streaming request produces nothing until it is finished)."""
    nxt = asyncio.ensure_future(events.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({nxt}, timeout=_DISCONNECT_POLL_S)
            if done:
                return nxt.result()
            if await request.is_disconnected():
                nxt.cancel()
                try:
                    await nxt
                except (asyncio.CancelledError, StopAsyncIteration):
                    pass
                return None
    except StopAsyncIteration:
        return None
    finally:
        if not nxt.done():
            nxt.cancel()


def create_app(
    backend: Any, *, api_key: Optional[str] = None, max_body_bytes: int = 1 << 20, title: str = "multilora"
) -> Any:
    """The ASGI app (FastAPI wrapped in the API-key/body-size guard)."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body("internal error", "internal_error"), status_code=500)

    @app.get("/health")
    async def health() -> Response:
        ok = await backend.health()
        return Response(status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> Dict[str, Any]:
        return {"object": "list", "data": await backend.models()}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(await backend.metrics(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request) -> Response:
        message = await backend.load_adapter(await _json_body(request))
        return Response(message, media_type="text/plain")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request) -> Response:
        message = await backend.unload_adapter(await _json_body(request))
        return Response(message, media_type="text/plain")

    async def _generate(request: Request, kind: str) -> Response:
        body = await _json_body(request)
        events = backend.generate(kind, body)
        headers: Dict[str, str] = {}
        first = await _first_event(request, events)
        while first is not None and first[0] == "headers":
            headers.update(first[1])
            first = await _first_event(request, events)
        if first is None:  # the client is gone; nobody reads this
            await events.aclose()
            return Response(status_code=499)
        if first[0] == "error":
            await events.aclose()
            return JSONResponse(first[2], status_code=first[1], headers=headers)
        if first[0] == "response":
            await events.aclose()
            return JSONResponse(first[1], headers=headers)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield _sse(first[1])
                async for event in events:
                    yield _sse(event[-1])
                yield b"data: [DONE]\n\n"
            finally:
                await events.aclose()  # a client that left cancels its request here

        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _generate(request, "completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await _generate(request, "chat")

    return _Guard(app, api_key, max_body_bytes)
