"""The OpenAPI document, built from the app itself so it cannot drift."""

from __future__ import annotations


import orjson

from service.settings import Settings

__all__ = ["openapi_json"]


def openapi_json() -> str:
    from service.app import create_app

    # The document does not depend on deployment settings; build with defaults and no key file.
    app = create_app(Settings(_env_file=None, auth="off", patient_key="openapi-" + "0" * 24))  # type: ignore[call-arg]
    return orjson.dumps(app.openapi(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
