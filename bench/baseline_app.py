"""The baselines: an endpoint that only reads the request body, parses it with orjson and answers.

Each is served exactly like the service (uvicorn, one worker, same event loop and HTTP parser,
and the same garbage-collector tuning as ``back-knee-cds serve``: untuned, collections during the
parse of a large body cost the baseline more than the parse itself), so ``service / baseline``
is the cost of what the service does beyond receiving and parsing a request. uvicorn starts them
through the factories ``serve_fastapi`` and ``serve_starlette``.

- ``app`` (the default, ``--baseline fastapi``): a FastAPI route, the framework the service is built
  on, so receiving a request includes what FastAPI itself costs per call (routing, the endpoint
  call, its middleware stack): the service's own work is what the ratio then measures. The route
  is a ``DirectRoute``, as the service's hook route is: served the same way, neither pays FastAPI's
  per-call parameter solving (which would otherwise count against the baseline alone, ~25 us).
- ``starlette_app`` (``--baseline starlette``): the same endpoint on bare Starlette, the floor of
  this server and parser; FastAPI's routing costs about as much again as this whole app.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.cdshooks.direct_route import DirectRoute
from service.runtime import tune_gc_for_serving

__all__ = ["app", "serve_fastapi", "serve_starlette", "starlette_app"]

CALL_PATH = "/cds-services/{service_id}"
LIVE_PATH = "/health/live"


async def call_service(request: Request) -> Response:
    data = orjson.loads(await request.body())
    return Response(orjson.dumps({"cards": [], "keys": len(data)}), media_type="application/json")


async def live(request: Request) -> Response:
    return Response(b"{}", media_type="application/json")


starlette_app = Starlette(routes=[Route(CALL_PATH, call_service, methods=["POST"]), Route(LIVE_PATH, live, methods=["GET"])])

app = FastAPI()


async def fastapi_call_service(service_id: str, request: Request) -> Response:
    """The service's route signature (a path parameter and the Request), the same parse and answer."""
    return await call_service(request)


app.router.add_api_route(CALL_PATH, fastapi_call_service, methods=["POST"], route_class_override=DirectRoute)


@app.get(LIVE_PATH)
async def fastapi_live(request: Request) -> Response:
    return await live(request)


def serve_fastapi() -> FastAPI:
    """uvicorn factory: the FastAPI baseline, the process's GC tuned as ``serve`` tunes it."""
    tune_gc_for_serving()
    return app


def serve_starlette() -> Starlette:
    """uvicorn factory: the Starlette baseline, the process's GC tuned as ``serve`` tunes it."""
    tune_gc_for_serving()
    return starlette_app
