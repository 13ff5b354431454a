"""The OpenAPI document, built from the app itself so it cannot drift."""

from __future__ import annotations


import orjson

from service.settings import settings_without_environment

__all__ = ["openapi_json"]


def openapi_json() -> str:
    from service.app import create_app

    # The document describes this build (its packaged catalogue), not a deployment: the CDS_*
    # variables of the shell it runs in are not read, and no key file is made.
    app = create_app(settings_without_environment(auth="off", patient_key="openapi-" + "0" * 24))
    return orjson.dumps(app.openapi(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
