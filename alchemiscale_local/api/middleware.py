"""Request-body limits and decompression (gzip, zstd) as pure ASGI middleware.

Bodies are counted as they stream in, so an oversized upload is refused with 413
without being buffered, and a compression bomb stops at the same limit.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import zstandard
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so FastAPI's own body parsing re-raises it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class _BadEncoding(HTTPException):
    def __init__(self, encoding: str, why: str) -> None:
        super().__init__(400, f"request body is not valid {encoding}: {why}")


class _Decoder:
    def __init__(self, encoding: str) -> None:
        self._z: Any
        if encoding == "gzip":
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self.decode = self._z.decompress
        elif encoding == "zstd":
            self._z = zstandard.ZstdDecompressor().decompressobj()
            self.decode = self._z.decompress
        else:
            raise ValueError(encoding)


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyMiddleware:
    """Enforce ``max_body_bytes`` (after decompression) and decode Content-Encoding gzip/zstd."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        encoding = headers.get(b"content-encoding", b"").decode("latin-1").strip().lower()
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max:
            await _reply(send, 413, f"request body of {int(length)} bytes exceeds the limit of {self.max}")
            return
        decoder: _Decoder | None = None
        if encoding and encoding != "identity":
            try:
                decoder = _Decoder(encoding)
            except ValueError:
                await _reply(send, 415, f"unsupported Content-Encoding {encoding!r} (use gzip or zstd)")
                return
            # Downstream sees a plain body of unknown length.
            scope = dict(scope)
            scope["headers"] = [
                (k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")
            ]
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] != "http.request":
                return message
            body = message.get("body", b"")
            if decoder is not None and body:
                try:
                    body = decoder.decode(body)
                except (zlib.error, zstandard.ZstdError) as exc:
                    raise _BadEncoding(encoding, str(exc)) from None
            seen += len(body)
            if seen > self.max:
                raise BodyTooLarge(self.max)
            return {**message, "body": body}

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, _BadEncoding) as exc:
            # Normally FastAPI turns these into responses; this covers reads outside a route.
            if not started:
                await _reply(send, exc.status_code, exc.detail)


def json_body(raw: bytes) -> Any:
    """Parse a JSON request body, rejecting NaN/Infinity."""

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None
