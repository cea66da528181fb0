"""What the pure ASGI middlewares share."""
from __future__ import annotations

from starlette.types import Message, Send


class StatusNoted:
    """An ASGI `send` that passes every message on and notes the response's status once it starts
    (None until then): for middlewares that count, log or answer around the app they wrap."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
