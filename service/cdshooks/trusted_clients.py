"""The CDS clients (EHRs) allowed to call the service: ``CDS_TRUSTED_CLIENTS_FILE``, read once at start.

The file is a YAML or JSON list; each entry names an issuer and where its public keys come from
(interface.md section 3 and decision 2)::

    - iss: https://ehr.example.org          # the token's "iss", exactly
      jwks_url: https://ehr.example.org/.well-known/jwks.json
      jku_prefixes: [https://ehr.example.org/keys/]
      jwks: {keys: [{kty: EC, crv: P-384, kid: ehr-2025, x: ..., y: ...}]}

A broken file stops the service at start with a message naming the file, the entry and the fix:
a typo in a security setting must never quietly let everyone in, or quietly lock everyone out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from service.cdshooks.fhir_allowlist import ServerUrl, UrlRefused, parse_server_url
from service.cdshooks.keys import VerificationKey, parse_jwks
from service.config_error import ConfigError

__all__ = ["TrustedClient", "TrustedClientsError", "load_trusted_clients", "parse_trusted_clients"]

_FIELDS = ("iss", "jwks", "jwks_url", "jku_prefixes", "name")


class TrustedClientsError(ConfigError):
    """``CDS_TRUSTED_CLIENTS_FILE`` cannot be read or an entry in it is invalid."""


@dataclass(frozen=True, slots=True)
class TrustedClient:
    """One EHR: its issuer and the key sources it may use, in lookup order."""

    iss: str
    keys: Mapping[str, VerificationKey]  # the inline ``jwks``, by kid
    jwks_url: str | None = None  # normalised: the URL that was checked is the URL fetched
    jku_prefixes: tuple[ServerUrl, ...] = ()
    name: str | None = None


def load_trusted_clients(path: Path) -> dict[str, TrustedClient]:
    """The clients listed in ``path``, by issuer."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrustedClientsError(
            f"{path}: cannot read the trusted clients file ({exc.strerror or exc}); check CDS_TRUSTED_CLIENTS_FILE"
        ) from None
    except UnicodeDecodeError:
        raise TrustedClientsError(f"{path}: the trusted clients file is not UTF-8 text") from None
    try:
        data = orjson.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except orjson.JSONDecodeError as exc:
        raise TrustedClientsError(f"{path}: not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise TrustedClientsError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    return parse_trusted_clients(data, source=str(path))


def parse_trusted_clients(data: Any, *, source: str) -> dict[str, TrustedClient]:
    """Validate the parsed file; every error names ``source`` and the entry."""
    if data is None:
        return {}
    if not isinstance(data, list):
        raise TrustedClientsError(f"{source}: must be a list of client entries (each with 'iss'), got {type(data).__name__}")
    clients: dict[str, TrustedClient] = {}
    for number, entry in enumerate(data, start=1):
        client = _parse_entry(entry, where=f"{source}: entry {number}")
        if client.iss in clients:
            raise TrustedClientsError(f"{source}: entry {number}: iss '{client.iss}' is listed twice; merge the two entries")
        clients[client.iss] = client
    return clients


def _parse_entry(entry: Any, *, where: str) -> TrustedClient:
    if not isinstance(entry, dict):
        raise TrustedClientsError(f"{where}: must be a mapping with 'iss' and a key source, got {type(entry).__name__}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        raise TrustedClientsError(f"{where}: 'iss' is required (the issuer exactly as the client's tokens carry it)")
    where = f"{where} (iss '{iss}')"
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise TrustedClientsError(f"{where}: unknown field {', '.join(repr(k) for k in unknown)}; allowed: {', '.join(_FIELDS)}")
    name = entry.get("name")
    if name is not None and not isinstance(name, str):
        raise TrustedClientsError(f"{where}: 'name' must be text")
    keys = _inline_keys(entry.get("jwks"), where=where)
    jwks_url = _url(entry.get("jwks_url"), field="jwks_url", where=where)
    jwks_url_text = jwks_url.url if jwks_url is not None else None
    prefixes = _prefixes(entry.get("jku_prefixes"), where=where)
    if not keys and jwks_url is None and not prefixes:
        raise TrustedClientsError(f"{where}: needs at least one key source: 'jwks' (inline), 'jwks_url' or 'jku_prefixes'")
    return TrustedClient(iss=iss, keys=keys, jwks_url=jwks_url_text, jku_prefixes=prefixes, name=name)


def _inline_keys(value: Any, *, where: str) -> dict[str, VerificationKey]:
    if value is None:
        return {}
    keys, problems = parse_jwks(value)
    if problems:
        raise TrustedClientsError(f"{where}: jwks: {problems[0]}")
    if not keys:
        raise TrustedClientsError(f"{where}: jwks has no keys; paste the client's public JWK Set or drop 'jwks'")
    return keys


def _url(value: Any, *, field: str, where: str) -> ServerUrl | None:
    """decision 2: https, or http on a loopback host; parsed the way the FHIR server allowlist is."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TrustedClientsError(f"{where}: '{field}' must be a URL string")
    try:
        return parse_server_url(value.strip(), allow_query=field == "jwks_url")
    except UrlRefused as exc:
        raise TrustedClientsError(f"{where}: {field} '{value}': {exc}") from None


def _prefixes(value: Any, *, where: str) -> tuple[ServerUrl, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise TrustedClientsError(f"{where}: 'jku_prefixes' must be a non-empty list of URL prefixes")
    prefixes = []
    for item in value:
        prefix = _url(item, field="jku_prefixes", where=where) if item is not None else None
        if prefix is None:
            raise TrustedClientsError(f"{where}: 'jku_prefixes' has an empty item")
        prefixes.append(prefix)
    return tuple(prefixes)
