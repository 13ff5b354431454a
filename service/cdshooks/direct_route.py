"""A FastAPI route that calls its endpoint directly when the endpoint asks FastAPI for nothing.

FastAPI's request handler solves an endpoint's parameters on every call (dependencies, query,
headers, cookies, body, each validated) and wraps the call in its telemetry hooks. The hook
endpoint takes only text from the path and the Request, and reads and validates its body itself:
solving that per call cost ~30 us of a typical hook call (in-process A/B, thread CPU). This route
keeps everything else FastAPI does with a route (OpenAPI, matching, the body limit, the error
handlers around it) and passes the path text and the Request straight to the endpoint.

Only when that is all FastAPI would do: an endpoint (or an inclusion of its router) that asks for
a dependency, a query/header/cookie/body parameter, a non-text path parameter, or a Response,
BackgroundTasks or SecurityScopes parameter gets FastAPI's own handler.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["DirectRoute", "calls_directly"]

try:  # where FastAPI keeps the route as an inclusion (prefix, router dependencies) sees it
    from fastapi.routing import _effective_route_context_var as _inclusion  # type: ignore[attr-defined]
except ImportError:  # another FastAPI: never call directly rather than miss an inclusion's dependencies
    _inclusion = None

_inclusion_context: ContextVar[Any] | None = _inclusion

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class DirectRoute(APIRoute):
    """``route_class_override`` for an endpoint ``async def f(<path text>..., request: Request) -> Response``."""

    def get_route_handler(self) -> Handler:
        dependant = _dependant_in_effect(self)
        if dependant is None or not calls_directly(dependant) or not _answers_with_a_response(self.endpoint):
            return super().get_route_handler()
        endpoint = self.endpoint
        path_names = tuple((field.alias, field.name) for field in dependant.path_params)
        request_name = dependant.request_param_name
        assert request_name is not None  # calls_directly checked it

        async def handler(request: Request) -> Response:
            path_params = request.path_params
            arguments: dict[str, Any] = {name: path_params[alias] for alias, name in path_names}
            arguments[request_name] = request
            response: Response = await endpoint(**arguments)
            return response

        return handler


def calls_directly(dependant: Dependant) -> bool:
    """True when FastAPI would only hand the endpoint its path text and the Request."""
    return (
        dependant.request_param_name is not None
        and not (dependant.dependencies or dependant.query_params or dependant.header_params)
        and not (dependant.cookie_params or dependant.body_params)
        and all(field.field_info.annotation is str for field in dependant.path_params)
        and dependant.websocket_param_name is None
        and dependant.http_connection_param_name is None
        and dependant.response_param_name is None
        and dependant.background_tasks_param_name is None
        and dependant.security_scopes_param_name is None
    )


def _answers_with_a_response(endpoint: Callable[..., Any]) -> bool:
    """A coroutine function annotated to return a Response (FastAPI would serialize anything else)."""
    if not inspect.iscoroutinefunction(endpoint):
        return False
    returns = typing.get_type_hints(endpoint).get("return")
    return isinstance(returns, type) and issubclass(returns, Response)


def _dependant_in_effect(route: APIRoute) -> Dependant | None:
    """The route's dependant, or the one of the inclusion being built (with its router's dependencies);
    None when FastAPI's inclusion context cannot be read."""
    if _inclusion_context is None:
        return None
    context = _inclusion_context.get()
    if context is None:
        return route.dependant
    if getattr(context, "original_route", None) is not route:
        return None
    dependant = getattr(context, "dependant", None)
    return dependant if isinstance(dependant, Dependant) else None
