"""A real JWKS host on loopback: uvicorn on 127.0.0.1, port 0, in a thread (``tests/support/loopback_server.py``).

Serves whatever JWK Sets a test publishes by path, counts every request per path, and can be
told to answer slowly, with an error, a redirect or an oversized body, so the service's fetching
(cache, refresh on rotation, rate limit, timeout, size limit) is exercised over real HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from tests.support.loopback_server import serve_on_loopback

__all__ = ["JwksHost", "serve_jwks_host"]


class JwksHost:
    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()
        self.delay_seconds = 0.0
        self.status: int | None = None
        self.redirect_to: str | None = None
        self.body: bytes | None = None
        self.content_encoding: str | None = None  # sent with ``body`` (encoded to match by the test)
        self.port = 0
        self._lock = threading.Lock()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def publish(self, path: str, document: Any) -> str:
        self.documents[path] = document
        return self.url(path)

    def reset(self) -> None:
        self.documents.clear()
        self.delay_seconds, self.status, self.redirect_to, self.body, self.content_encoding = 0.0, None, None, None, None
        with self._lock:
            self.hits.clear()

    def hits_for(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        with self._lock:
            self.hits[path] += 1
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        headers = [(b"content-type", b"application/json")]
        if self.redirect_to is not None:
            status, body = 302, b""
            headers.append((b"location", self.redirect_to.encode()))
        elif self.status is not None:
            status, body = self.status, b'{"error": "switched"}'
        elif self.body is not None:
            status, body = 200, self.body
            if self.content_encoding is not None:
                headers.append((b"content-encoding", self.content_encoding.encode()))
        elif path in self.documents:
            status, body = 200, orjson.dumps(self.documents[path])
        else:
            status, body = 404, b'{"error": "no such JWK Set"}'
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextmanager
def serve_jwks_host() -> Iterator[JwksHost]:
    host = JwksHost()
    with serve_on_loopback(host, name="jwks-test-host", http="h11", ws="none") as port:
        host.port = port
        yield host
