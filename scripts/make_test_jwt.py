"""Make a test CDS client: a key pair, its trusted-clients entry, and bearer JWTs signed with it.

For integration engineers trying the service with ``CDS_AUTH=jwt`` before the real EHR is wired
up. The private key stays in the file you name (mode 0600); the service only ever gets the
public JWK Set. Usage::

    # 1. a key pair (ES384 by default; --alg RS384 for RSA) and the entry to trust it
    python3 scripts/make_test_jwt.py keygen --out var/test-client --iss https://my-ehr.test
    #    writes var/test-client.pem (private) and var/test-client.jwks.json (public), and
    #    var/test-client.trusted-clients.yaml, a file CDS_TRUSTED_CLIENTS_FILE can name

    # 2. a token for the exact URL you call (a new jti each time: tokens are single-use)
    TOKEN=$(python3 scripts/make_test_jwt.py token --key var/test-client.pem \\
              --iss https://my-ehr.test --aud http://127.0.0.1:8080/cds-services)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/cds-services

The ``kid`` is the key's RFC 7638 thumbprint, so ``token`` finds it from the key alone.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["generate_key", "public_jwk", "make_token", "main"]

_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}
_ALGS = ("ES384", "RS384", "ES256", "RS256")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_key(alg: str) -> PrivateKey:
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg]())
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def public_jwk(key: PrivateKey, alg: str) -> dict[str, Any]:
    """The public JWK with ``kid`` (its RFC 7638 thumbprint), ``alg`` and ``use``."""
    public = key.public_key()
    jwk: dict[str, Any] = (
        ECAlgorithm.to_jwk(public, as_dict=True) if isinstance(public, ec.EllipticCurvePublicKey) else RSAAlgorithm.to_jwk(public, as_dict=True)
    )
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def make_token(key: PrivateKey, *, alg: str, iss: str, aud: str, lifetime: int = 300, **claims: Any) -> str:
    """A CDS Hooks 2.0 client JWT: kid and typ in the header; iss, aud, exp, iat, jti in the payload."""
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": public_jwk(key, alg)["kid"], "typ": "JWT"})


def _alg_of(key: PrivateKey, requested: str | None) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384"}.get(key.curve.name)
        if alg is None or (requested and requested != alg):
            raise SystemExit(f"error: the key is an EC {key.curve.name} key; it signs {alg or 'no supported algorithm'}, not {requested}")
        return alg
    if requested not in (None, "RS384", "RS256"):
        raise SystemExit(f"error: an RSA key signs RS384 or RS256, not {requested}")
    return requested or "RS384"


def _keygen(args: argparse.Namespace) -> int:
    key = generate_key(args.alg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path = out.with_suffix(".pem")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    jwks = {"keys": [public_jwk(key, args.alg)]}
    out.with_suffix(".jwks.json").write_text(json.dumps(jwks, indent=2) + "\n", encoding="utf-8")
    entry = [{"iss": args.iss, "name": "test client made by scripts/make_test_jwt.py", "jwks": jwks}]
    trusted = out.with_suffix(".trusted-clients.yaml")
    trusted.write_text(yaml.safe_dump(entry, sort_keys=False), encoding="utf-8")
    print(f"private key:      {private_path} (keep it; never give it to the service)")
    print(f"public JWK Set:   {out.with_suffix('.jwks.json')}")
    print(f"trusted clients:  {trusted}  ->  CDS_TRUSTED_CLIENTS_FILE={trusted}")
    return 0


def _token(args: argparse.Namespace) -> int:
    try:
        key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {args.key}: cannot read a PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise SystemExit(f"error: {args.key}: not an EC or RSA private key")
    extra = {name: value for name, value in (("sub", args.sub), ("tenant", args.tenant)) if value}
    print(make_token(key, alg=_alg_of(key, args.alg), iss=args.iss, aud=args.aud, lifetime=args.lifetime, **extra))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_test_jwt.py", description="A test CDS client key and its JWTs.")
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="make a key pair and a trusted clients file for it")
    keygen.add_argument("--out", required=True, help="path stem: writes STEM.pem, STEM.jwks.json, STEM.trusted-clients.yaml")
    keygen.add_argument("--iss", required=True, help="the issuer the tokens will carry")
    keygen.add_argument("--alg", choices=_ALGS, default="ES384")
    keygen.set_defaults(run=_keygen)
    token = commands.add_parser("token", help="print a signed JWT for one call")
    token.add_argument("--key", required=True, help="the .pem written by keygen")
    token.add_argument("--iss", required=True)
    token.add_argument("--aud", required=True, help="the exact URL called, e.g. http://127.0.0.1:8080/cds-services")
    token.add_argument("--alg", choices=_ALGS)
    token.add_argument("--lifetime", type=int, default=300, help="seconds until exp (default 300)")
    token.add_argument("--sub")
    token.add_argument("--tenant")
    token.set_defaults(run=_token)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
