"""Wiring authentication, CORS and the per-request log context into the app, from the settings.

Kept out of ``app.py`` so the security posture is decided in one place: what is loaded at
start (and stops the start when broken), what the start-up log says, and the middleware order.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI

from service.cdshooks.auth import JwtAuthMiddleware
from service.cdshooks.cors import CorsMiddleware, parse_origins
from service.cdshooks.jwks import JwksCache
from service.cdshooks.jwt_verifier import JwtVerifier, RememberJti
from service.cdshooks.request_context import RequestLogContextMiddleware
from service.cdshooks.trusted_clients import TrustedClient, load_trusted_clients
from service.cdshooks.unanswered import UnansweredRequestMiddleware
from service.settings import Settings

__all__ = ["load_clients", "build_verifier", "log_security_posture", "install_security"]

log = logging.getLogger("service.security")

AUTH_OFF_WARNING = (
    "AUTHENTICATION IS OFF (CDS_AUTH=off): anyone who can reach this port can call every CDS service "
    "and send it patient data. Development only; never expose this process to a network."
)


def load_clients(settings: Settings) -> dict[str, TrustedClient]:
    """The trusted clients file, validated at start whenever it is set (even with auth off)."""
    if settings.trusted_clients_file is None:
        return {}
    return load_trusted_clients(settings.trusted_clients_file)


def build_verifier(
    settings: Settings, clients: dict[str, TrustedClient], *, http: httpx.AsyncClient, remember_jti: RememberJti
) -> JwtVerifier | None:
    """The app's verifier, or None with ``CDS_AUTH=off``."""
    if settings.auth == "off":
        return None
    return JwtVerifier(
        clients,
        jwks=JwksCache(http, ttl_seconds=settings.jwks_cache_seconds),
        remember_jti=remember_jti,
        clock_skew_seconds=settings.jwt_clock_skew_seconds,
    )


def log_security_posture(settings: Settings, clients: dict[str, TrustedClient]) -> None:
    """One start-up line saying who may call, loudly when nobody or everybody can."""
    if settings.auth == "off":
        log.warning(AUTH_OFF_WARNING, extra={"fields": {"setting": "CDS_AUTH"}})
        return
    if not clients:
        why = (
            "CDS_TRUSTED_CLIENTS_FILE is not set"
            if settings.trusted_clients_file is None
            else f"{settings.trusted_clients_file} lists no clients"
        )
        log.error(
            f"no trusted CDS clients: {why}, so every call to /cds-services will be refused with 401; "
            "register the EHR in a trusted clients file (see the README), or set CDS_AUTH=off for local trials",
            extra={"fields": {"setting": "CDS_TRUSTED_CLIENTS_FILE"}},
        )
        return
    log.info(
        "JWT authentication on",
        extra={
            "fields": {
                "trusted_issuers": sorted(clients),
                "aud_base": settings.public_base_url or "the request's scheme and Host header (CDS_PUBLIC_BASE_URL unset)",
            }
        },
    )


def install_security(app: FastAPI, settings: Settings) -> None:
    """Middleware, innermost first: JWT auth; the answer to a request the app could not answer; CORS
    around both (so 401s, 500s and 503s carry CORS headers); then the log context."""
    origins = parse_origins(settings.cors_origins)
    app.add_middleware(JwtAuthMiddleware)
    app.add_middleware(UnansweredRequestMiddleware)
    if origins:
        app.add_middleware(CorsMiddleware, origins=origins)
    app.add_middleware(RequestLogContextMiddleware)
