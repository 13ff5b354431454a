"""The ASGI application: ``create_app(settings)`` and the lifespan that owns shared resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
from fastapi import FastAPI

from service import __version__
from service.api import health, rules_pages
from service.cdshooks import routes as cds_routes
from service.cdshooks.errors import install_error_handlers
from service.cdshooks.fhir_allowlist import ServerAllowlist
from service.cdshooks.fhir_server import FETCHES_PER_SERVER
from service.cdshooks.gathering import Gatherer
from service.cdshooks.instrumentation import RequestMetricsMiddleware
from service.cdshooks.off_loop import FactsRunner
from service.cdshooks.openapi_docs import install_openapi
from service.cdshooks.security import build_verifier, install_security, load_clients, log_security_posture
from service.cards import CardBuilder
from service.config_error import ConfigError
from service.engine.catalogue import load_catalogue
from service.fhir import ValidationMemo, load_models
from service.metrics import Metrics
from service.outbound_tls import tls_verification
from service.privacy import PatientHasher, load_or_create_key
from service.settings import Settings
from service.state import AppState, utc_now
from service.store import Store, SuppressionPolicy
from service.store.database import checked_url

__all__ = ["create_app"]

log = logging.getLogger("service.app")


def _patient_hasher(settings: Settings) -> PatientHasher:
    """The hasher of ``CDS_PATIENT_KEY``, else of the key file; a short or unreadable key stops the start."""
    if settings.patient_key:
        source, key = "CDS_PATIENT_KEY", settings.patient_key.get_secret_value().encode()
        if key != key.strip():
            # Kept as given (the hashes already stored were made with it), but the key file is read
            # stripped: a replica given the same secret as a file would hash every patient apart.
            log.warning(
                "CDS_PATIENT_KEY begins or ends with whitespace, which is part of the key; the key file is read "
                "without it, so give every replica the key the same way",
                extra={"fields": {"setting": "CDS_PATIENT_KEY"}},
            )
    else:
        source = f"CDS_PATIENT_KEY_FILE {settings.patient_key_file}"
        try:
            key = load_or_create_key(settings.patient_key_file)
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read or create the key ({exc.strerror or exc})") from None
    try:
        return PatientHasher(key)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}; generate one with: openssl rand -hex 32") from None


def create_app(settings: Settings, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """Build the app. The catalogue is loaded here so a broken ``rules/`` fails at start.

    ``clock`` gives the time of each request (UTC, its date is the evaluation date); tests fix it.
    """
    catalogue = load_catalogue(settings.rules_dir)
    hasher = _patient_hasher(settings)
    trusted_clients = load_clients(settings)  # a broken trusted clients file fails here, at start
    fhir_allowlist = ServerAllowlist(settings.fhir_server_allowlist)  # a bad entry fails here, at start
    try:  # here too: in the lifespan it was a traceback from uvicorn
        checked_url(settings.database_url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    verify = tls_verification()  # a CA file that cannot be loaded fails here, at start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log_security_posture(settings, trusted_clients)
        load_models()  # before serving: else the first hook call imports them (34 ms of its 35)
        # One HTTP client for the whole process. No hop to another host: redirects are never
        # followed, and proxy variables in the environment are not read (a bearer token would go there).
        # Its connections are capped per FHIR server (fhir_server.FETCHES_PER_SERVER), not in all:
        # with httpx's 100 in all, one stalled server held them and every other server's fetches
        # and the JWKS fetches waited for one.
        async with httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            verify=verify,
            timeout=settings.fhir_timeout_seconds,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=FETCHES_PER_SERVER),
        ) as http:
            metrics = Metrics()
            memo = ValidationMemo(settings.validation_cache_size)
            metrics.watch_validation_memo(lambda: (memo.hits, memo.misses, len(memo)))
            store = Store(
                settings.database_url,
                queue_size=settings.audit_queue_size,
                retry_seconds=settings.database_retry_seconds,
                migrate_on_start=settings.migrate_on_start,
                on_audit_lost=metrics.audit_lost.inc,
                suppression_policy=SuppressionPolicy(catalogue.suppress_days, catalogue.suppressing_reasons, catalogue.override_reason_system),
            )
            app.state.cds = AppState(
                settings=settings,
                catalogue=catalogue,
                cards=CardBuilder(catalogue),
                metrics=metrics,
                hasher=hasher,
                store=store,
                gatherer=Gatherer(
                    http,
                    metrics=metrics,
                    allowlist=fhir_allowlist,
                    timeout_seconds=settings.fhir_timeout_seconds,
                    page_limit=settings.fhir_page_limit,
                    max_resources=settings.max_prefetch_resources,
                    max_bytes=settings.max_body_bytes,
                    max_depth=settings.max_json_depth,
                ),
                facts_runner=FactsRunner(memo),
                verifier=build_verifier(settings, trusted_clients, http=http, remember_jti=store.remember_jti),
                clock=clock or utc_now,
            )
            await store.start()
            try:
                yield
            finally:
                await store.close()

    app = FastAPI(
        title="back-knee-cds",
        version=__version__,
        description="CDS Hooks 2.0 service: back and knee pain risk factors, injury referral and care guidance.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_security(app, settings)  # JWT auth, CORS around it, request log context
    app.add_middleware(RequestMetricsMiddleware)
    app.include_router(cds_routes.router)
    app.include_router(health.router)
    app.include_router(rules_pages.router)
    install_openapi(
        app,
        hooks_by_service={service.id: service.hooks for service in catalogue.services.values()},
        prefetch_by_service={service.id: service.prefetch for service in catalogue.services.values()},
        override_reason_system=catalogue.override_reason_system,
    )
    return app
