"""DirectRoute: the hook endpoint is called without FastAPI solving its parameters, and any route
that asks FastAPI for more than its path text and the Request still gets FastAPI's own handler."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse, Response

from service.app import create_app
from service.cdshooks.direct_route import DirectRoute
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request
from tests.conftest import SettingsFactory
from tests.support.fastapi_solving import solved  # noqa: F401 (a fixture)


def ten() -> int:
    return 10


def test_the_hook_endpoint_is_called_directly_and_the_others_are_not(make_settings: SettingsFactory, solved: list[str]) -> None:
    with TestClient(create_app(make_settings()), base_url="http://testserver") as client:
        assert client.post("/cds-services/back-knee-risk-factors", json=hook_request(prefetch=EMPTY_PREFETCH)).status_code == 200
        assert solved == []
        assert client.get("/cds-services").status_code == 200
    assert solved == ["discovery"]


def _app(router: APIRouter, **include: object) -> TestClient:
    app = FastAPI()
    app.include_router(router, **include)  # type: ignore[arg-type]
    return TestClient(app)


def test_a_plain_endpoint_gets_its_path_text_and_request(solved: list[str]) -> None:
    router = APIRouter()

    async def echo(name: str, request: Request) -> Response:
        return JSONResponse({"name": name, "method": request.method})

    router.add_api_route("/echo/{name}", echo, methods=["GET"], route_class_override=DirectRoute)
    assert _app(router).get("/echo/a%20b").json() == {"name": "a b", "method": "GET"}
    assert solved == []


def test_endpoints_asking_for_more_get_fastapis_handler(solved: list[str]) -> None:
    router = APIRouter()

    async def number(n: int, request: Request) -> Response:
        return JSONResponse({"n": n})

    async def query(name: str, request: Request, q: str = "none") -> Response:
        return JSONResponse({"q": q})

    async def model(name: str, request: Request) -> dict[str, str]:
        return {"name": name}

    for path, endpoint in (("/number/{n}", number), ("/query/{name}", query), ("/model/{name}", model)):
        router.add_api_route(path, endpoint, methods=["GET"], route_class_override=DirectRoute)
    client = _app(router)
    assert client.get("/number/7").json() == {"n": 7}
    assert client.get("/number/seven").status_code == 422
    assert client.get("/query/x?q=yes").json() == {"q": "yes"}
    assert client.get("/model/x").json() == {"name": "x"}
    assert solved == ["number", "number", "query", "model"]


def test_a_dependency_of_the_including_router_is_still_run(solved: list[str]) -> None:
    router = APIRouter()
    seen: list[str] = []

    def audit(request: Request) -> None:
        seen.append(request.url.path)

    async def plain(name: str, request: Request) -> Response:
        return JSONResponse({"name": name})

    router.add_api_route("/plain/{name}", plain, methods=["GET"], route_class_override=DirectRoute)
    client = _app(router, prefix="/p", dependencies=[Depends(audit)])
    assert client.get("/p/plain/x").json() == {"name": "x"}
    assert seen == ["/p/plain/x"] and solved == ["plain"]


def test_a_dependency_of_the_endpoint_is_still_run(solved: list[str]) -> None:
    router = APIRouter()

    async def with_dependency(name: str, request: Request, value: Annotated[int, Depends(ten)]) -> Response:
        return JSONResponse({"value": value})

    router.add_api_route("/dep/{name}", with_dependency, methods=["GET"], route_class_override=DirectRoute)
    assert _app(router).get("/dep/x").json() == {"value": 10}
    assert solved == ["with_dependency"]
