"""The README's recipe: scripts/make_test_jwt.py makes a key, its trusted clients file and tokens the service accepts."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.security.conftest import DISCOVERY, SecureClient, bearer

SCRIPT = REPO_ROOT / "scripts" / "make_test_jwt.py"
ISS = "https://my-ehr.test"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_keygen_then_token_is_accepted_once(secure_client: SecureClient, tmp_path: Path, alg: str) -> None:
    stem = tmp_path / "test-client"
    run("keygen", "--out", str(stem), "--iss", ISS, "--alg", alg)
    assert stat.S_IMODE(stem.with_suffix(".pem").stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in stem.with_suffix(".trusted-clients.yaml").read_text()
    token = run("token", "--key", str(stem.with_suffix(".pem")), "--iss", ISS, "--aud", DISCOVERY, "--tenant", "t1")
    with secure_client(None, trusted_clients_file=stem.with_suffix(".trusted-clients.yaml")) as client:
        assert client.get("/cds-services", headers=bearer(token)).status_code == 200
        assert client.get("/cds-services", headers=bearer(token)).status_code == 401  # single use


def test_token_with_an_unreadable_key_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "token", "--key", str(tmp_path / "missing.pem"), "--iss", ISS, "--aud", DISCOVERY],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {tmp_path / 'missing.pem'}: cannot read a PEM private key")
