"""The ``back-knee-cds`` command: serve, evaluate, rules check, db upgrade, openapi.

Errors are one line on stderr (``error: FILE: what is wrong``) with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson
from pydantic import ValidationError

from service.catalogue_error import CatalogueError
from service.config_error import ConfigError
from service.settings import Settings

__all__ = ["main", "UsageError", "load_settings"]


DEFAULT_PORT = 8080


class UsageError(Exception):
    """Bad input to a command; printed as one line, exit code 2."""


def load_settings() -> Settings:
    """Settings from the environment, or a UsageError naming the variable and what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "CDS_" + str(first["loc"][0]).upper() if first["loc"] else "configuration"
        raise UsageError(f"{name}: {first['msg'].removeprefix('Value error, ')}") from None


# How `serve` runs uvicorn (bench/run.py serves its baseline the same way):
# - loop "asyncio", not uvloop: under load a hook call is CPU work of milliseconds, and uvloop
#   then keeps serving connections that became readable while others wait, unread, for up to
#   a second (MagicStack/uvloop#123). Typical body at concurrency 32 on one CPU: p99 560-600 ms
#   with uvloop, 100-120 ms with asyncio, at the same throughput.
# - no access line from uvicorn: the app writes one line per request itself (request_context).
# - a bounded graceful shutdown: uvicorn otherwise waits for every open request, and one client
#   whose body stalls kept it waiting until a KILL, which skipped flushing the audit queue. After
#   SHUTDOWN_GRACE_SECONDS it cancels what is left and the store still gets its ~11 s to flush:
#   within the 30 s a container orchestrator gives by default.
SHUTDOWN_GRACE_SECONDS = 10
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "asyncio",
    "log_config": None,
    "proxy_headers": True,
    "access_log": False,
    "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
}


def _check_serve_options(args: argparse.Namespace) -> None:
    """What uvicorn would otherwise meet as a traceback (a port out of range), an exit code 3 (a
    host that does not resolve, a port in use), or not at all (no workers)."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: {args.port} is not a TCP port (0 to 65535)")
    if args.workers < 1:
        raise UsageError(f"--workers: {args.workers} is not a number of processes (1 or more)")
    try:
        socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--host: '{args.host}' is not an address this machine can listen on ({exc})") from None
    # Bound as uvicorn will bind it, then let go: a port another process holds (or one below 1024
    # without the right) is one line here, where uvicorn logs several and exits 3.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as exc:
        raise UsageError(f"--port: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    _check_serve_options(args)
    settings = load_settings()
    from service.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    from service.app import create_app

    # Built here even for several workers: a broken catalogue or trusted clients file stops the
    # start with one line, instead of a traceback from each worker.
    app = create_app(settings)
    if args.workers > 1:
        from service.metrics import SharedMetricsDirectory

        try:
            shared = SharedMetricsDirectory()
        except OSError as exc:
            raise UsageError(f"--workers: cannot make a directory for the workers' shared /metrics counts ({exc})") from None
        with shared:
            return _serve_workers(args)
    from service.runtime import tune_gc_for_serving

    tune_gc_for_serving()  # after start-up: what it built is frozen out of every collection
    return _serve_one(uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, **UVICORN_OPTIONS)))


def _serve_one(server: Any) -> int:
    """``uvicorn.run`` for one worker, where a hangup (SIGHUP: a closed terminal, a reload sent by
    a service manager) stops the service as gracefully as SIGTERM. uvicorn handles only INT and
    TERM, so SIGHUP killed the process at once, with the audit records still queued and no line
    said so. Started with SIGHUP ignored (``nohup``), it stays ignored: the server is meant to
    outlive its terminal. (Under ``--workers N``, see ``runtime.create_serving_app_from_env``.)"""
    from uvicorn.config import STARTUP_FAILURE

    hung_up = False

    def hang_up(signum: int, frame: Any) -> None:
        nonlocal hung_up
        if not hung_up:
            logging.getLogger("service.cli").warning("SIGHUP received: stopping as for SIGTERM")
        hung_up = True
        server.handle_exit(signum, frame)

    previous = signal.getsignal(signal.SIGHUP)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, hang_up)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGHUP, previous if previous is not None else signal.SIG_DFL)
    if not server.started:
        return STARTUP_FAILURE  # the log says why, as uvicorn.run exits 3
    if hung_up:
        signal.raise_signal(signal.SIGHUP)  # ended by the signal, as uvicorn ends after a SIGTERM
    return 0


def _serve_workers(args: argparse.Namespace) -> int:
    """What ``uvicorn.run(..., workers=N)`` does, plus the exit code it does not give: when a worker
    fails to start (its app cannot be built), uvicorn stops every worker and returns normally, and
    an exit 0 would tell an orchestrator the service stopped cleanly."""
    from uvicorn import Config
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    # Each worker builds its own app from the environment (uvicorn's factory mode).
    config = Config(
        "service.runtime:create_serving_app_from_env", factory=True, host=args.host, port=args.port,
        workers=args.workers, **UVICORN_OPTIONS,
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        return STARTUP_FAILURE  # the worker logged why; uvicorn exits 3 for one worker as well
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from service.openapi_doc import openapi_json

    document = openapi_json()
    if args.out == "-":
        sys.stdout.write(document)
    else:
        try:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(document, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{args.out}: cannot write the document there ({exc.strerror or exc})") from None
        print(f"wrote {args.out}")
    return 0


# The facts look back up to 100 years from "today" (a rule file's longest window): an --as-of in
# the first years of the calendar would reach before date.min. No hook call was ever made before this.
EARLIEST_AS_OF = date(1900, 1, 1)


def _as_of(text: str | None) -> date:
    """``--as-of`` or today's date in UTC (the service's "today" is the request's UTC date)."""
    if text is None:
        return datetime.now(UTC).date()
    try:
        as_of = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of: expected a date as YYYY-MM-DD, got '{text}'") from None
    if as_of < EARLIEST_AS_OF:
        raise UsageError(f"--as-of: {text} is before {EARLIEST_AS_OF.isoformat()}, the earliest date evaluated as 'today'")
    return as_of


def _evaluate(args: argparse.Namespace) -> int:
    from service.card_text import card_text
    from service.cards import CardBuilder
    from service.engine.catalogue import load_catalogue
    from service.fhir_files import FhirFileError, patient_ids, read_inputs
    from service.pipeline import evaluate_service

    today = _as_of(args.as_of)
    settings = load_settings()
    catalogue = load_catalogue(settings.rules_dir)
    if args.service_id is not None and catalogue.service(args.service_id) is None:
        raise UsageError(f"--service: unknown service '{args.service_id}'; choose from {', '.join(catalogue.services)}")
    service_ids = [args.service_id] if args.service_id else list(catalogue.services)
    try:
        data = read_inputs(args.files)
    except FhirFileError as exc:
        raise UsageError(str(exc)) from None
    base_url = settings.public_base_url or f"http://127.0.0.1:{DEFAULT_PORT}"
    # What the service would refuse (a hook it does not serve, prefetch it would have to fetch) is
    # not evaluated: "no cards" would read as an all-clear. Nothing evaluable at all for the one
    # service asked for: an error.
    patients = patient_ids(data) or [None]
    unevaluated = {}
    for patient_id in patients:
        for service_id in service_ids:
            refusal = data.refusal(catalogue.services[service_id], patient_id)
            if refusal is not None:
                unevaluated[patient_id, service_id] = refusal
    if args.service_id and len(unevaluated) == len(patients):
        raise UsageError(next(iter(unevaluated.values())))
    results = []
    cards = CardBuilder(catalogue)
    for patient_id in patients:
        for service_id in service_ids:
            if (patient_id, service_id) in unevaluated:
                results.append((patient_id, service_id, None))
                continue
            evaluation = evaluate_service(
                data.resources, catalogue=catalogue, service_id=service_id, patient_id=patient_id, today=today, base_url=base_url,
                cards=cards,
            )
            results.append((patient_id, service_id, evaluation))
    if args.format == "json":
        document = {
            "as_of": today.isoformat(),
            "catalogue_version": catalogue.version,
            "results": [
                {"patient": patient_id, "service": service_id, "not_evaluated": unevaluated[patient_id, service_id]}
                if evaluation is None
                else {
                    "patient": patient_id,
                    "service": service_id,
                    "cards": [card.model_dump(exclude_none=True) for card in evaluation.cards],
                    "skipped": list(evaluation.skipped),
                }
                for patient_id, service_id, evaluation in results
            ],
        }
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    lines = [f"Evaluated on {today.isoformat()} with rule catalogue {catalogue.version}."]
    for patient_id, service_id, evaluation in results:
        lines += ["", f"== Patient {patient_id or '(no Patient resource)'}: {service_id} ({catalogue.services[service_id].title})"]
        if evaluation is None:
            lines.append(f"(not evaluated: {unevaluated[patient_id, service_id]})")
            continue
        lines += [card_text(card) for card in evaluation.cards] or ["(no cards)"]
        lines += [f"(skipped: {item})" for item in evaluation.skipped]
    print("\n".join(lines))
    return 0


def _rules_check(args: argparse.Namespace) -> int:
    from service.engine.catalogue import load_catalogue

    directory = Path(args.directory) if args.directory else load_settings().rules_dir
    catalogue = load_catalogue(directory)
    print(f"{directory}: catalogue {catalogue.version}: {len(catalogue.rules)} rules, {len(catalogue.services)} services, {len(catalogue.facts)} facts")
    for rule in catalogue.rules:
        print(f"{rule.id} {rule.version} {rule.service}")
    return 0


def _seconds(text: str) -> float:
    """A duration argument: a finite number, 0 or more (``nan`` waited forever)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got '{text}'")
    return seconds


def _db_upgrade(args: argparse.Namespace) -> int:
    from service.store import DatabaseUnreachable, MigrationError, describe_url, upgrade_database, wait_for_database
    from service.store.migrate import load_schema_info

    settings = load_settings()
    shown = describe_url(settings.database_url)

    def waiting(reason: str) -> None:
        print(f"waiting up to {args.wait:g} s for database {shown}: {reason}", file=sys.stderr)

    try:
        wait_for_database(
            settings.database_url,
            timeout_seconds=args.wait,
            retry_seconds=settings.database_retry_seconds,
            on_wait=waiting,
        )
        revision = upgrade_database(settings.database_url)
    except DatabaseUnreachable as exc:
        raise UsageError(f"{exc} (check CDS_DATABASE_URL, or that the database server is running)") from None
    except (MigrationError, ValueError, FileNotFoundError) as exc:  # FileNotFoundError: no migrations/ found
        raise UsageError(str(exc)) from None
    head = load_schema_info().head
    newer = "" if revision == head else f" (newer than this build's {head}: nothing to apply)"
    print(f"database {shown} is at revision {revision}{newer}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, its errors one line like every other bad input (interface.md section 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="back-knee-cds", description="CDS Hooks 2.0 service for back and knee pain.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=_serve)

    evaluate = commands.add_parser("evaluate", help="evaluate FHIR data offline and print the cards")
    evaluate.add_argument("files", nargs="+", metavar="FILE")
    evaluate.add_argument("--service", dest="service_id")
    evaluate.add_argument("--as-of", dest="as_of")
    evaluate.add_argument("--format", choices=["text", "json"], default="text")
    evaluate.set_defaults(run=_evaluate)

    rules = commands.add_parser("rules", help="the rule catalogue")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_commands.add_parser("check", help="load and validate the rule catalogue")
    check.add_argument("directory", nargs="?", metavar="DIR")
    check.set_defaults(run=_rules_check)

    db = commands.add_parser("db", help="the database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations to CDS_DATABASE_URL")
    upgrade.add_argument(
        "--wait", type=_seconds, default=30.0, metavar="SECONDS", help="how long to wait for the database to answer (default 30)"
    )
    upgrade.set_defaults(run=_db_upgrade)

    openapi = commands.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--out", default="openapi/openapi.json")
    openapi.set_defaults(run=_openapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        sys.stdout.flush()  # here, so a closed pipe shows as BrokenPipeError below, not at exit
        return result
    except (UsageError, CatalogueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`evaluate ... | head`): stop quietly, and keep the interpreter's
        # final flush of stdout from failing again (the recipe in Python's signal module docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
