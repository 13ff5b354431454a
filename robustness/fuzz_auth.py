"""schemathesis hook for ``make fuzz``: every request carries a fresh client JWT, as an EHR's would.

The fuzz server runs with ``CDS_AUTH=jwt`` and trusts one test client (robustness/fuzz.py makes
its key). Tokens are single-use (a ``jti`` is accepted once) and name the exact URL called, so one
is signed per request rather than cached. schemathesis' ``ignored_auth`` check then also sends each
``/cds-services`` operation without a token and with a broken one, and expects 401.

Loaded by schemathesis through ``SCHEMATHESIS_HOOKS=robustness.fuzz_auth``; reads the key file,
issuer and server URL from the environment variables named below.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import schemathesis
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from scripts.make_test_jwt import make_token

__all__ = ["ALGORITHM", "BASE_URL_VARIABLE", "ISSUER_VARIABLE", "KEY_FILE_VARIABLE", "ClientJwt"]

KEY_FILE_VARIABLE = "BACK_KNEE_FUZZ_KEY_FILE"
ISSUER_VARIABLE = "BACK_KNEE_FUZZ_ISS"
BASE_URL_VARIABLE = "BACK_KNEE_FUZZ_BASE_URL"
ALGORITHM = "ES384"


@cache
def _key() -> Any:
    with open(os.environ[KEY_FILE_VARIABLE], "rb") as pem:
        return load_pem_private_key(pem.read(), password=None)


# refresh_interval=None: no caching, a token per request; retry_on=[]: a 401 is a finding, not a cue to retry.
@schemathesis.auth(refresh_interval=None, retry_on=[])
class ClientJwt:
    def get(self, case: Any, context: Any) -> str:
        audience = os.environ[BASE_URL_VARIABLE] + case.formatted_path
        return make_token(_key(), alg=ALGORITHM, iss=os.environ[ISSUER_VARIABLE], aud=audience)

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
