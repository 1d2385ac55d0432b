"""``X-Alchemiscale-Worker``: which API worker process answered (pure ASGI, a few µs a request).

The value is a random name per process, nothing about the host or the pid: harmless to show
anyone, useful in logs and to see requests spread over the workers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-alchemiscale-worker"


class WorkerHeader:
    def __init__(self, app: ASGIApp, worker: str) -> None:
        self.app = app
        self.header = (HEADER.encode(), worker.encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named_send)
