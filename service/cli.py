"""The ``back-knee-cds`` command: serve, evaluate, rules check, db upgrade, openapi.

Errors are one line on stderr (``error: FILE: what is wrong``) with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
from pydantic import ValidationError

from service.catalogue_error import CatalogueError
from service.config_error import ConfigError
from service.settings import Settings

__all__ = ["main", "UsageError"]


class UsageError(Exception):
    """Bad input to a command; printed as one line, exit code 2."""


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "CDS_" + str(first["loc"][0]).upper() if first["loc"] else "configuration"
        raise UsageError(f"{name}: {first['msg']}") from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings()
    from service.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    from service.app import create_app

    # Built here even for several workers: a broken catalogue or trusted clients file stops the
    # start with one line, instead of a traceback from each worker.
    app = create_app(settings)
    if args.workers > 1:
        # Each worker builds its own app from the environment (uvicorn's factory mode).
        uvicorn.run(
            "service.runtime:create_serving_app_from_env", factory=True, host=args.host, port=args.port,
            workers=args.workers, log_config=None, proxy_headers=True,
        )
        return 0
    from service.runtime import tune_gc_for_serving

    tune_gc_for_serving()  # after start-up: what it built is frozen out of every collection
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, proxy_headers=True)
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from service.openapi_doc import openapi_json

    document = openapi_json()
    if args.out == "-":
        sys.stdout.write(document)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(document, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _not_yet(name: str) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        raise UsageError(f"'{name}' is not available in this build")

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="back-knee-cds", description="CDS Hooks 2.0 service for back and knee pain.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=_serve)

    evaluate = commands.add_parser("evaluate", help="evaluate FHIR data offline and print the cards")
    evaluate.add_argument("files", nargs="+", metavar="FILE")
    evaluate.add_argument("--service", dest="service_id")
    evaluate.add_argument("--as-of", dest="as_of")
    evaluate.add_argument("--format", choices=["text", "json"], default="text")
    evaluate.set_defaults(run=_not_yet("evaluate"))

    rules = commands.add_parser("rules", help="the rule catalogue")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_commands.add_parser("check", help="load and validate the rule catalogue")
    check.add_argument("directory", nargs="?", metavar="DIR")
    check.set_defaults(run=_not_yet("rules check"))

    db = commands.add_parser("db", help="the database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations to CDS_DATABASE_URL")
    upgrade.set_defaults(run=_not_yet("db upgrade"))

    openapi = commands.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--out", default="openapi/openapi.json")
    openapi.set_defaults(run=_openapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except (UsageError, CatalogueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
