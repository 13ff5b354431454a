"""``serve`` and ``openapi`` refuse bad options and settings with one line and exit code 2, before uvicorn or a write."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import UsageError, load_settings
from tests.cli import run_cli


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--port", "99999"], "error: --port: 99999 is not a TCP port (0 to 65535)"),
        (["--port", "-5"], "error: --port: -5 is not a TCP port (0 to 65535)"),
        (["--workers", "0"], "error: --workers: 0 is not a number of processes (1 or more)"),
        (["--host", "no-such-host.invalid"], "error: --host: 'no-such-host.invalid' is not an address this machine can listen on"),
    ],
)
def test_bad_serve_options_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    code, out, err = run_cli(capsys, "serve", *argv)
    assert code == 2 and out == ""
    assert err.startswith(expected) and err.count("\n") == 1


def test_openapi_into_a_directory_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "openapi", "--out", str(tmp_path))
    assert (code, out) == (2, "")
    assert err == f"error: {tmp_path}: cannot write the document there (Is a directory)\n"


def test_openapi_under_a_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "openapi.json"
    code, _, err = run_cli(capsys, "openapi", "--out", str(target))
    assert code == 2 and err.startswith(f"error: {target}: cannot write the document there (") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CDS_PUBLIC_BASE_URL": "notaurl"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL without query or fragment"),
        ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org/?x=1"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_CORS_ORIGINS": "*", "CDS_AUTH": "jwt"}, "error: configuration: CDS_CORS_ORIGINS='*' needs CDS_AUTH=off"),
    ],
)
def test_bad_settings_are_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    """What ``serve`` (and ``db upgrade``) print and exit 2 with: ``main`` prints a UsageError as one line."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError) as refused:
        load_settings()
    assert f"error: {refused.value}".startswith(expected) and "\n" not in str(refused.value)
