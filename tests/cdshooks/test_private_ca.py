"""A FHIR server whose certificate a private CA signed (a hospital's PKI), trusted through
SSL_CERT_FILE as for any httpx client, though the service's client ignores proxy variables."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from service.app import create_app
from service.config_error import ConfigError
from tests.cdshooks.requests import hook_request
from tests.conftest import SettingsFactory

REFERRAL = "/cds-services/back-knee-injury-referral"
TOKEN = "private-ca-test-token"


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, signer = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


class _Bundles(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"resourceType": "Bundle", "type": "searchset"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_fhir_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, CA file) of an HTTPS FHIR server on loopback whose certificate a private CA signed."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test Hospital CA", ca_key, None)
    server = _certificate("127.0.0.1", server_key, ("Test Hospital CA", ca_key))
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Bundles)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}/fhir", ca_file
    finally:
        httpd.shutdown()
        httpd.server_close()


def _call(client: TestClient, server: str) -> tuple[int, str]:
    body = hook_request(patient_id="p1", fhirServer=server, prefetch={"patient": None})
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"}
    response = client.post(REFERRAL, json=body)
    return response.status_code, response.text


def test_a_private_ca_named_by_ssl_cert_file_is_trusted(
    make_settings: SettingsFactory, https_fhir_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca_file = https_fhir_server
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with TestClient(create_app(make_settings(fhir_server_allowlist=[server]))) as client:
        status, text = _call(client, server)
    assert status == 412 and "TLS certificate could not be verified (a private CA goes in SSL_CERT_FILE)" in text  # the bundled CAs do not know it
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    with TestClient(create_app(make_settings(fhir_server_allowlist=[server]))) as client:
        assert _call(client, server) == (200, '{"cards":[]}')


@pytest.mark.parametrize("hashed", [False, True], ids=["a-plain-ca-file", "rehashed"])
def test_ssl_cert_dir_works_only_as_openssl_reads_it(
    make_settings: SettingsFactory, https_fhir_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hashed: bool
) -> None:
    """OpenSSL reads a CA directory by hash-named files: a directory holding only ca.pem trusted
    nothing, silently, and every call answered 'could not connect'."""
    server, ca_file = https_fhir_server
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / "ca.pem").write_bytes(ca_file.read_bytes())
    if hashed:  # what `openssl rehash` makes: <subject hash>.0
        if shutil.which("openssl") is None:
            pytest.skip("the openssl command is not installed")
        subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)], capture_output=True, text=True, check=True)
        (directory / f"{subject_hash.stdout.strip()}.0").write_bytes(ca_file.read_bytes())
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    if not hashed:
        with pytest.raises(ConfigError, match="SSL_CERT_DIR: .* holds no hash-named CA certificates"):
            create_app(make_settings(fhir_server_allowlist=[server]))
        return
    with TestClient(create_app(make_settings(fhir_server_allowlist=[server]))) as client:
        assert _call(client, server) == (200, '{"cards":[]}')


def test_a_ca_file_that_cannot_be_loaded_stops_the_start(make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="SSL_CERT_FILE: cannot load CA certificates from"):
        create_app(make_settings())
