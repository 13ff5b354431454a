"""The status an ASGI app answered with, for middlewares that report on every request once it ends."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Message, Send

__all__ = ["StatusWatch"]


class StatusWatch:
    """Wraps ``send``: ``status`` is what the client was sent, 500 until the app starts answering
    (what the client sees if the app dies before that). ``headers`` are added to the answer."""

    __slots__ = ("_headers", "_send", "started", "status")

    def __init__(self, send: Send, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self._send = send
        self._headers = headers
        self.status = 500
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
            if self._headers:
                message = {**message, "headers": [*message.get("headers", ()), *self._headers]}
        await self._send(message)
