"""How the service checks the certificates of the servers it calls (FHIR servers, JWKS hosts).

Its HTTP client ignores the environment's proxy variables (``trust_env=False``: a proxy is a host
off the allowlist, and would see the EHR's bearer token). httpx then also ignores
``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, the usual way to trust a hospital's private CA; they are
read here instead, with the meaning httpx gives them (those CAs instead of the bundled ones).
"""

from __future__ import annotations

import os
import re
import ssl

from service.config_error import ConfigError

__all__ = ["tls_verification"]


_HASHED_NAME = re.compile(r"^[0-9a-f]{8}\.r?[0-9]+$")


def _hashed_certificates_in(directory: str) -> bool:
    try:
        return any(_HASHED_NAME.match(name) for name in os.listdir(directory))
    except OSError:
        return False


def tls_verification() -> ssl.SSLContext | bool:
    """httpx's ``verify``: the bundled CAs (True), or those of SSL_CERT_FILE / SSL_CERT_DIR."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        return True
    if capath is not None and not _hashed_certificates_in(capath):
        # OpenSSL would take the directory silently and trust nothing: every TLS call would fail.
        raise ConfigError(
            f"SSL_CERT_DIR: {capath} holds no hash-named CA certificates (made by `openssl rehash` / c_rehash); "
            "for a single CA file, use SSL_CERT_FILE"
        )
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        source = "SSL_CERT_FILE" if cafile else "SSL_CERT_DIR"
        raise ConfigError(f"{source}: cannot load CA certificates from {cafile or capath} ({exc})") from None
