"""The baseline: an endpoint that only reads the request body, parses it with orjson and answers.

It is served exactly like the service (uvicorn, one worker, same event loop and HTTP parser), so
``service / baseline`` is the cost of what the service does beyond receiving and parsing a request.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["app"]


async def call_service(request: Request) -> Response:
    data = orjson.loads(await request.body())
    return Response(orjson.dumps({"cards": [], "keys": len(data)}), media_type="application/json")


async def live(request: Request) -> Response:
    return Response(b"{}", media_type="application/json")


app = Starlette(
    routes=[
        Route("/cds-services/{service_id}", call_service, methods=["POST"]),
        Route("/health/live", live, methods=["GET"]),
    ]
)
