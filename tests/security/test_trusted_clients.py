"""CDS_TRUSTED_CLIENTS_FILE: read at start; a broken file stops the start with a message naming file and entry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.cdshooks.keys import VerificationKey, parse_jwk
from service.cdshooks.trusted_clients import TrustedClientsError, load_trusted_clients, parse_trusted_clients
from service.cli import main
from tests.security.conftest import ISS, write_clients
from tests.security.keys import jwks_of, make_key


def test_yaml_and_json_files_load_the_same_clients(tmp_path: Path) -> None:
    key = make_key("ES384", kid="k1")
    clients = [
        {"iss": ISS, "name": "Example EHR", "jwks": jwks_of(key), "jwks_url": "https://ehr.example.org/jwks.json"},
        {"iss": "https://sandbox.cds-hooks.org", "jku_prefixes": ["https://sandbox.cds-hooks.org/.well-known/"]},
    ]
    from_yaml = load_trusted_clients(write_clients(tmp_path / "clients.yaml", clients))
    json_path = tmp_path / "clients.json"
    json_path.write_bytes(orjson.dumps(clients))
    from_json = load_trusted_clients(json_path)
    assert from_yaml == from_json
    assert set(from_yaml) == {ISS, "https://sandbox.cds-hooks.org"}
    assert list(from_yaml[ISS].keys) == ["k1"]
    assert from_yaml[ISS].jwks_url == "https://ehr.example.org/jwks.json"
    assert [p.base for p in from_yaml["https://sandbox.cds-hooks.org"].jku_prefixes] == ["https://sandbox.cds-hooks.org/.well-known"]


def test_loopback_http_is_allowed_for_key_urls() -> None:
    clients = parse_trusted_clients(
        [{"iss": ISS, "jwks_url": "http://127.0.0.1:9000/jwks", "jku_prefixes": ["http://localhost:9000/", "http://[::1]:9000/k/"]}],
        source="f",
    )
    assert clients[ISS].jwks_url == "http://127.0.0.1:9000/jwks"


def _jwk(**changes: Any) -> dict[str, Any]:
    jwk = make_key("ES384", kid="k1").public_jwk()
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not None}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"iss": ISS}, "must be a list of client entries"),
        (["https://ehr.example.org"], "entry 1: must be a mapping"),
        ([{"jwks_url": "https://ehr.example.org/jwks"}], "entry 1: 'iss' is required"),
        ([{"iss": ISS}], f"entry 1 (iss '{ISS}'): needs at least one key source"),
        ([{"iss": ISS, "jwks_uri": "https://x.example/jwks"}], "unknown field 'jwks_uri'; allowed: iss, jwks, jwks_url, jku_prefixes, name"),
        ([{"iss": ISS, "jwks_url": "http://ehr.example.org/jwks"}], "jwks_url 'http://ehr.example.org/jwks': the URL must use https"),
        ([{"iss": ISS, "jwks_url": "ftp://ehr.example.org/jwks"}], "jwks_url 'ftp://ehr.example.org/jwks': the URL must start with https://"),
        ([{"iss": ISS, "jwks_url": "https://ehr.example.org/a/../jwks"}], "'..'"),
        ([{"iss": ISS, "jku_prefixes": ["http://keys.example.org/"]}], "jku_prefixes 'http://keys.example.org/': the URL must use https"),
        ([{"iss": ISS, "jku_prefixes": ["https://keys.example.org/?v=1"]}], "must not carry a query"),
        ([{"iss": ISS, "jku_prefixes": []}], "'jku_prefixes' must be a non-empty list"),
        ([{"iss": ISS, "jku_prefixes": [None]}], "'jku_prefixes' has an empty item"),
        ([{"iss": ISS, "jwks": {"keys": []}}], "jwks has no keys"),
        ([{"iss": ISS, "jwks": [{"kty": "EC"}]}], 'a JWK Set must be an object with a "keys" list'),
        ([{"iss": ISS, "jwks": {"keys": [_jwk(kid=None)]}}], "keys[0]: key has no 'kid'"),
        ([{"iss": ISS, "jwks": {"keys": [make_key("ES384", kid="k1").private_jwk()]}}], "contains private key material (d)"),
        ([{"iss": ISS, "jwks": {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}}], "kty 'oct' is not supported"),
        ([{"iss": ISS, "jwks": {"keys": [_jwk(crv="P-521")]}}], "EC crv 'P-521' is not supported"),
        ([{"iss": ISS, "jwks": {"keys": [_jwk(alg="ES256")]}}], "alg 'ES256' does not fit"),
        # JSON where a string belongs: a key that does not fit, not a traceback at start.
        ([{"iss": ISS, "jwks": {"keys": [_jwk(crv=["P-384"])]}}], "EC crv ['P-384'] is not supported"),
        ([{"iss": ISS, "jwks": {"keys": [_jwk(alg=["ES384"])]}}], "alg ['ES384'] does not fit"),
        ([{"iss": ISS, "jwks": {"keys": [_jwk(kty={"EC": 1})]}}], "kty {'EC': 1} is not supported"),
        ([{"iss": ISS, "jwks": {"keys": [_jwk(use="enc")]}}], "use 'enc' is not 'sig'"),
        ([{"iss": ISS, "jwks": {"keys": [_jwk(x="AAAA")]}}], "the key material is not a valid public key"),
        ([{"iss": ISS, "jwks": {"keys": [_jwk(), _jwk()]}}], "kid 'k1' appears twice"),
        ([{"iss": ISS, "jwks_url": "https://a.example/j"}, {"iss": ISS, "jwks_url": "https://b.example/j"}], "is listed twice"),
    ],
)
def test_invalid_entries_are_refused_naming_file_entry_and_fix(data: Any, message: str) -> None:
    with pytest.raises(TrustedClientsError) as error:
        parse_trusted_clients(data, source="/etc/cds/clients.yaml")
    assert str(error.value).startswith("/etc/cds/clients.yaml: ")
    assert message in str(error.value)


def test_small_rsa_keys_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    weak = RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(), as_dict=True)
    with pytest.raises(TrustedClientsError, match="RSA key of 1024 bits is too short"):
        parse_trusted_clients([{"iss": ISS, "jwks": {"keys": [{**weak, "kid": "weak"}]}}], source="f")


def test_an_empty_file_means_no_clients(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text("# nobody yet\n", encoding="utf-8")
    assert load_trusted_clients(path) == {}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("clients.yaml", "- iss: [unclosed\n", "not valid YAML (line 2)"),
        ("clients.json", '[{"iss": }]', "not valid JSON"),
    ],
)
def test_unparseable_files_name_the_file(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TrustedClientsError, match=re.escape(message)) as error:
        load_trusted_clients(path)
    assert str(error.value).startswith(str(path))


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(TrustedClientsError, match="cannot read the trusted clients file .* check CDS_TRUSTED_CLIENTS_FILE"):
        load_trusted_clients(tmp_path / "nope.yaml")


@pytest.mark.usefixtures("restore_logging")
def test_serve_refuses_to_start_with_a_broken_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_clients(tmp_path / "clients.yaml", [{"iss": ISS, "jwks_url": "http://ehr.example.org/jwks"}])
    monkeypatch.setenv("CDS_TRUSTED_CLIENTS_FILE", str(path))
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    monkeypatch.setenv("CDS_PATIENT_KEY", "k" * 32)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: entry 1 (iss '{ISS}'): jwks_url")
    assert "Traceback" not in err


# Every JSON type, and strings that are valid in some member but not in another.
_ANY_JSON: list[Any] = [None, 1, 1.5, True, [], ["P-256"], {}, {"EC": 1}, "", "ES384", "P-384", "RSA", "sig", "AAAA"]


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "RS384"])
def test_a_key_with_any_json_in_any_member_is_a_key_or_a_reason_never_an_exception(algorithm: str) -> None:
    base = make_key(algorithm, kid="k1").public_jwk()
    for member in {*base, "alg", "use", "crv", "kty", "kid", "key_ops"}:
        for value in _ANY_JSON:
            parsed = parse_jwk({**base, member: value})
            assert isinstance(parsed, VerificationKey | str), (member, value)
