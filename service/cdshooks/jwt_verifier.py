"""Verifying a CDS client's bearer JWT (CDS Hooks 2.0 section 6; interface.md decisions 2 and 3).

Checks, in order, each failing with :class:`AuthFailure` naming the check (for the log and the
``cds_auth_failures_total`` metric, never for the client, who gets a bare 401):

1. ``header``     an ``Authorization: Bearer <token>`` header, once
2. ``malformed``  the token parses as a JWS with a JSON header and payload
3. ``alg``        ES384, RS384, ES256 or RS256 (never ``none`` or HS*); ``typ`` absent or JWT; no ``crit``
4. ``kid``        a ``kid`` in the header, found among the client's keys (see below)
5. ``iss``        the (not yet verified) ``iss`` names a trusted client
6. ``jku``        when the kid is not found inline or at ``jwks_url``, a ``jku`` under the client's prefixes
7. ``signature``  PyJWT verifies the signature with that key, for that algorithm only
8. ``exp``/``iat``/``nbf``/``claims``  times within the clock skew; exp, iat, iss, aud, jti present
9. ``aud``        the URL being called (a string, or an array of exactly one)
10. ``exp``        at most 24 h ahead (tokens are per call; a far exp would pin its jti for as long)
11. ``jti``/``replay``  a sane jti, never seen before for this issuer (stored until exp + skew)

Key lookup (decision 2): the entry's inline ``jwks`` and its cached ``jwks_url`` keys first
(refreshed once on an unknown kid); the token's ``jku`` is fetched only when the kid is still
not found, and only when it lies under one of the entry's ``jku_prefixes``.
The replay check runs last, so only tokens with a valid signature ever reach the database.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import jwt

from service.cdshooks.fhir_allowlist import UrlRefused, parse_server_url
from service.cdshooks.jwks import JwksCache
from service.cdshooks.keys import ALLOWED_ALGORITHMS, VerificationKey
from service.cdshooks.trusted_clients import TrustedClient

__all__ = ["AuthFailure", "ClientIdentity", "JwtVerifier", "RememberJti"]

RememberJti = Callable[[str, str, datetime], Awaitable[bool]]
"""``Store.remember_jti(issuer, jti, expires_at)``: True the first time, False for a replay."""

MAX_TOKEN_BYTES = 16 * 1024
MAX_JTI_LENGTH = 255
# CDS clients sign a fresh token per call, living minutes (the sandbox: 5). A far exp would keep
# its jti in the database for as long, and a stolen token usable as long.
MAX_LIFETIME_SECONDS = 24 * 3600
# jku URLs remembered per issuer as proven (a client rotates among a few, not hundreds).
_PROVEN_JKUS_PER_ISSUER = 8
# (issuer, caller address) pairs whose last new-jku fetch is remembered.
_NEW_JKU_CALLERS = 10_000
_DEFAULT_PORTS = {"http": 80, "https": 443}
# exp, iat and nbf: NumericDate, a JSON number (RFC 7519 section 2).
_TIME_CLAIMS = ("exp", "iat", "nbf")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
K = TypeVar("K")
V = TypeVar("V")


class AuthFailure(Exception):
    """The token was refused; ``check`` is a short label, ``reason`` one line for the log."""

    def __init__(self, check: str, reason: str, *, issuer: str | None = None):
        super().__init__(f"{check}: {reason}")
        self.check = check
        self.reason = reason
        self.issuer = issuer


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """Who called, from a verified token; fine to log (CDS Hooks 2.0: iss, tenant and jti may be logged)."""

    iss: str
    jti: str
    sub: str | None = None
    tenant: str | None = None


class JwtVerifier:
    """Verifies bearer JWTs against the trusted clients; one per app."""

    def __init__(
        self,
        clients: Mapping[str, TrustedClient],
        *,
        jwks: JwksCache,
        remember_jti: RememberJti,
        clock_skew_seconds: float,
        min_new_jku_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ):
        self._clients = clients
        self._jwks = jwks
        self._remember_jti = remember_jti
        self._skew = clock_skew_seconds
        self._min_new_jku = min_new_jku_seconds
        self._clock = clock
        # (issuer, caller address) -> when a not-yet-cached jku URL was last fetched for it. Per caller
        # too: forged tokens from one address cannot use up the real EHR's chance (no key is needed
        # to send one). Bounded: the oldest entries go first.
        self._last_new_jku: OrderedDict[tuple[str, str], float] = OrderedDict()
        # issuer -> jku URLs whose keys verified one of its tokens: exempt from the new-URL limit,
        # which forged tokens (no key needed) could otherwise hold, locking the real client out.
        self._proven_jkus: dict[str, OrderedDict[str, None]] = {}

    async def verify(self, authorization: str | None, *, audiences: Collection[str], caller: str = "") -> ClientIdentity:
        """The caller's identity, or :class:`AuthFailure`. ``audiences``: the URLs ``aud`` may name;
        ``caller``: the client's address (new jku URLs are rate-limited per issuer and address).

        Raises ``StoreUnavailable`` (from the store) when the replay check cannot be made.
        """
        if not self._clients:
            raise AuthFailure("no_trusted_clients", "no trusted clients are configured (CDS_TRUSTED_CLIENTS_FILE)")
        token = _bearer_token(authorization)
        header, payload = _unverified_parts(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:  # a list or object is unhashable
            raise AuthFailure("alg", f"alg {str(alg)[:20]!r} is not allowed (ES384, RS384, ES256, RS256)")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthFailure("alg", f"typ {str(typ)[:40]!r} is not JWT")
        if "crit" in header:
            raise AuthFailure("alg", "the header lists critical extensions ('crit'), which this service does not implement")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise AuthFailure("kid", "the header has no usable kid (CDS Hooks requires one)")
        issuer = payload.get("iss")
        client = self._clients.get(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise AuthFailure("iss", f"iss {str(issuer)[:200]!r} is not a trusted client")
        key, jku = await self._find_key(client, kid=kid, jku=header.get("jku"), caller=caller)
        if not key.verifies(alg):
            raise AuthFailure("alg", f"key '{kid}' does not verify {alg} (it verifies {', '.join(sorted(key.algorithms))})", issuer=client.iss)
        claims = self._verified_claims(token, key=key, alg=alg, issuer=client.iss)
        if jku is not None:
            self._prove_jku(client.iss, jku)
        _check_audience(claims.get("aud"), audiences, issuer=client.iss)
        return await self._check_replay(claims, issuer=client.iss)

    async def _find_key(self, client: TrustedClient, *, kid: str, jku: Any, caller: str) -> tuple[VerificationKey, str | None]:
        """The key, and the jku URL it came from (None for a pinned key or the client's jwks_url)."""
        key = client.keys.get(kid)
        if key is not None:
            return key, None
        if client.jwks_url is not None:
            key = await self._jwks.find(client.jwks_url, kid)
            if key is not None:
                return key, None
        if jku is None:
            raise AuthFailure("kid", f"kid '{kid}' is not among the keys of {client.iss} and the token has no jku", issuer=client.iss)
        jku = self._allowed_jku(client, kid=kid, jku=jku)
        new = not self._jwks.knows(jku) and jku not in self._proven_jkus.get(client.iss, ())
        if new and not self._may_fetch_new_jku(client.iss, caller):
            raise AuthFailure("kid", f"kid '{kid}' is unknown; fetching another new jku for {client.iss} is rate-limited", issuer=client.iss)
        key = await self._jwks.find(jku, kid)
        if key is None:
            raise AuthFailure("kid", f"kid '{kid}' is not in the JWK Set at {jku[:300]}", issuer=client.iss)
        return key, jku

    def _prove_jku(self, issuer: str, jku: str) -> None:
        """Remember (per issuer, the last few) a jku whose key verified a token."""
        _keep_recent(self._proven_jkus.setdefault(issuer, OrderedDict()), jku, None, _PROVEN_JKUS_PER_ISSUER)

    @staticmethod
    def _allowed_jku(client: TrustedClient, *, kid: str, jku: Any) -> str:
        """The jku as the URL to fetch, when it lies under one of the client's prefixes (whole path segments)."""
        try:
            target = parse_server_url(jku, allow_query=True)
        except UrlRefused as exc:
            raise AuthFailure("jku", f"kid '{kid}' is unknown and jku {str(jku)[:300]!r} is refused: {exc}", issuer=client.iss) from None
        if not any(prefix.contains(target) for prefix in client.jku_prefixes):
            raise AuthFailure("jku", f"kid '{kid}' is unknown and jku {jku[:300]!r} is not under the client's jku_prefixes", issuer=client.iss)
        return target.url

    def _may_fetch_new_jku(self, issuer: str, caller: str) -> bool:
        """Random jku paths under a prefix must not each cost a fetch: one new URL per issuer and
        caller address per interval."""
        now = self._clock()
        last = self._last_new_jku.get((issuer, caller))
        if last is not None and now - last < self._min_new_jku:
            return False
        _keep_recent(self._last_new_jku, (issuer, caller), now, _NEW_JKU_CALLERS)
        return True

    def _verified_claims(self, token: str, *, key: VerificationKey, alg: str, issuer: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                leeway=self._skew,
                options={
                    "require": ["exp", "iat", "iss", "aud", "jti"],
                    "verify_aud": False,  # checked below: exact URL, one-element arrays only
                    "verify_iss": False,  # already matched to the client whose key verified it
                    "verify_sub": False,  # extra claims are tolerated, whatever their shape
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthFailure("signature", f"signature does not verify with key '{key.kid}'", issuer=issuer) from None
        except jwt.ExpiredSignatureError:
            raise AuthFailure("exp", "the token has expired (exp is past, beyond the clock skew)", issuer=issuer) from None
        except jwt.ImmatureSignatureError as exc:
            check = "nbf" if "nbf" in str(exc) else "iat"
            raise AuthFailure(check, f"the token is not valid yet ({check} is in the future, beyond the clock skew)", issuer=issuer) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthFailure("claims", f"the token has no '{exc.claim}' claim", issuer=issuer) from None
        except jwt.InvalidTokenError as exc:
            raise AuthFailure("claims", f"invalid claims: {str(exc)[:200]}", issuer=issuer) from None
        for name in _TIME_CLAIMS:  # PyJWT reads "1795875000" as a time too; RFC 7519 says a JSON number
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthFailure("claims", f"'{name}' is not a number of seconds since the epoch", issuer=issuer)
        return claims

    async def _check_replay(self, claims: dict[str, Any], *, issuer: str) -> ClientIdentity:
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
            raise AuthFailure("jti", f"jti must be text of 1 to {MAX_JTI_LENGTH} characters", issuer=issuer)
        try:
            exp = float(claims["exp"])
        except OverflowError:  # an integer past a float's range (PyJWT took it): endlessly far ahead
            exp = math.inf
        if exp - self._clock() > MAX_LIFETIME_SECONDS:
            raise AuthFailure("exp", f"exp is more than {MAX_LIFETIME_SECONDS // 3600} h ahead; client tokens must be short-lived", issuer=issuer)
        # The token is acceptable until exp + skew, so its jti must be remembered that long.
        expires_at = datetime.fromtimestamp(exp + self._skew, UTC)
        if not await self._remember_jti(issuer, jti, expires_at):
            raise AuthFailure("replay", f"jti {jti[:80]!r} was already used by {issuer}", issuer=issuer)
        tenant, sub = claims.get("tenant"), claims.get("sub")
        return ClientIdentity(
            iss=issuer,
            jti=jti,
            sub=sub if isinstance(sub, str) else None,
            tenant=tenant if isinstance(tenant, str) else None,
        )


def _keep_recent(recent: OrderedDict[K, V], key: K, value: V, capacity: int) -> None:
    """Set ``key`` as the most recent entry; past ``capacity`` the least recent go first."""
    recent[key] = value
    recent.move_to_end(key)
    while len(recent) > capacity:
        recent.popitem(last=False)


def _bearer_token(authorization: str | None) -> str:
    if authorization is None:
        raise AuthFailure("header", "no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthFailure("header", "the Authorization header is not 'Bearer <JWT>'")
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthFailure("malformed", f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    return token


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload as sent, read only to choose the client and key; nothing is trusted yet."""
    try:
        decoded = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise AuthFailure("malformed", f"the token is not a JWS: {str(exc)[:120]}") from None
    header, payload = decoded.get("header"), decoded.get("payload")
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AuthFailure("malformed", "the token's header or payload is not a JSON object")
    return header, payload


def _check_audience(aud: Any, audiences: Collection[str], *, issuer: str) -> None:
    """CDS Hooks 2.0: ``aud`` is the exact URL called; scheme and host compared case-insensitively."""
    if isinstance(aud, list):
        if len(aud) != 1:
            raise AuthFailure("aud", f"aud is an array of {len(aud)} values; expected the one URL called", issuer=issuer)
        aud = aud[0]
    if not isinstance(aud, str):
        raise AuthFailure("aud", "aud is not a URL string", issuer=issuer)
    wanted = {normalise_audience(url) for url in audiences}
    if normalise_audience(aud) not in wanted:
        raise AuthFailure("aud", f"aud {aud[:300]!r} is not the URL called ({' or '.join(sorted(audiences))})", issuer=issuer)


def normalise_audience(url: str) -> str:
    """Lower-case scheme and host, default port dropped; the path compared exactly as sent.

    A URL with user info, a fragment, an empty port or query, whitespace or control characters is
    left as it is: the URL called has none of them, so such an ``aud`` matches nothing (rebuilt
    from its parts, it would).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or "@" in parts.netloc
        or parts.netloc.endswith(":")  # an empty port
        or "#" in url
        or url.endswith("?")  # an empty query
        or _SPACE_OR_CONTROL.search(url)  # urlsplit deletes tabs and newlines without a word
    ):
        return url
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path or '/'}{query}"
