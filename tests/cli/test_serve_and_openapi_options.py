"""``serve`` and ``openapi`` refuse bad options with one line and exit code 2, before uvicorn or a write."""

from __future__ import annotations

from pathlib import Path

import pytest

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
