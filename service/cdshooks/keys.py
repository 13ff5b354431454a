"""CDS clients' public keys: a JWK read into a verification key, and the algorithms it may verify.

CDS Hooks 2.0 section 6: clients sign with an asymmetric algorithm, ES384 and RS384 recommended;
the sandbox uses ES256. ``none`` and every HS* are refused before any key is looked at.
A key verifies only the algorithms of its own type and curve (an RSA key never an ES* token,
a P-256 key never ES384), so a key cannot be used for an algorithm it was not made for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK
from jwt.exceptions import PyJWKError, PyJWTError

__all__ = ["ALLOWED_ALGORITHMS", "VerificationKey", "parse_jwk", "parse_jwks"]

ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384", "ES256", "RS256"})

# (kty, crv) of a JWK -> the algorithms it may verify.
_ALGORITHMS_BY_KEY_TYPE: Mapping[tuple[str, str | None], frozenset[str]] = {
    ("EC", "P-256"): frozenset({"ES256"}),
    ("EC", "P-384"): frozenset({"ES384"}),
    ("RSA", None): frozenset({"RS256", "RS384"}),
}
# Members that only a private (or symmetric) JWK has: a trusted client publishes its public key only.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key of a client, by ``kid``."""

    kid: str
    algorithms: frozenset[str]
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey

    def verifies(self, alg: str) -> bool:
        return alg in self.algorithms


def parse_jwk(data: object) -> VerificationKey | str:
    """The key, or why it cannot be used (a short reason naming the member at fault)."""
    if not isinstance(data, dict):
        return "a key must be a JSON object"
    kid = data.get("kid")
    if not isinstance(kid, str) or not kid:
        return "key has no 'kid' (CDS Hooks requires a kid on every key)"
    kty = data.get("kty")
    crv = data.get("crv") if kty == "EC" else None
    # Members are looked up, not trusted: a list or object where a string belongs (crv: ["P-256"])
    # is a key that does not fit, never an unhashable lookup that fails the whole JWK Set.
    allowed = _ALGORITHMS_BY_KEY_TYPE.get((str(kty), crv)) if crv is None or isinstance(crv, str) else None
    if allowed is None:
        found = f"EC crv {crv!r}" if kty == "EC" else f"kty {kty!r}"
        return f"key '{kid}': {found} is not supported (use EC P-384, EC P-256 or RSA)"
    private = [member for member in _PRIVATE_MEMBERS if member in data]
    if private:
        return f"key '{kid}' contains private key material ({', '.join(private)}); publish only the public key"
    use = data.get("use")
    if use is not None and use != "sig":
        return f"key '{kid}': use {use!r} is not 'sig'"
    alg = data.get("alg")
    if alg is not None:
        if not isinstance(alg, str) or alg not in allowed:
            return f"key '{kid}': alg {alg!r} does not fit a {kty} key here (allowed: {', '.join(sorted(allowed))})"
        allowed = frozenset({alg})
    key = _public_key(data, next(iter(sorted(allowed))))
    if isinstance(key, str):
        return f"key '{kid}': {key}"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        return f"key '{kid}': RSA key of {key.key_size} bits is too short (at least {_MIN_RSA_BITS})"
    return VerificationKey(kid=kid, algorithms=allowed, key=key)


def parse_jwks(document: object) -> tuple[dict[str, VerificationKey], list[str]]:
    """The usable keys of a JWK Set by kid, and a problem line for each key left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return {}, ['a JWK Set must be an object with a "keys" list']
    keys: dict[str, VerificationKey] = {}
    problems: list[str] = []
    for index, item in enumerate(document["keys"]):
        parsed = parse_jwk(item)
        if isinstance(parsed, str):
            problems.append(f"keys[{index}]: {parsed}")
        elif parsed.kid in keys:
            problems.append(f"keys[{index}]: kid '{parsed.kid}' appears twice in the set")
        else:
            keys[parsed.kid] = parsed
    return keys, problems


def _public_key(data: dict[str, Any], algorithm: str) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey | str:
    try:
        key = PyJWK(data, algorithm=algorithm).key
    except (PyJWKError, PyJWTError, ValueError, TypeError):
        # PyJWT's message repeats the whole JWK; ours names the key instead.
        return "the key material is not a valid public key"
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return "the key material is not a public key"
    return key
