"""The status an ASGI app answered with, for middlewares that report on every request once it ends."""

from __future__ import annotations

from starlette.types import Message, Send

__all__ = ["StatusWatch"]


class StatusWatch:
    """Wraps ``send``: ``status`` is what the client was sent, 500 until the app starts answering
    (what the client sees if the app dies before that)."""

    __slots__ = ("_send", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
        await self._send(message)
