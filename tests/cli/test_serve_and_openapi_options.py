"""``serve`` refuses bad options, settings and patient keys, and ``openapi`` an unwritable path: one line, exit code 2."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from service.app import create_app
from service.cli import UsageError, load_settings
from service.config_error import ConfigError
from tests.cli import run_cli
from tests.conftest import SettingsFactory


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


def test_a_port_another_process_listens_on_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_cli(capsys, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert (code, out) == (2, "")
    assert err == f"error: --port: cannot listen on 127.0.0.1:{port} (Address already in use)\n"


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
        ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org:844e"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org:99999"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_PUBLIC_BASE_URL": "https://:443"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_PUBLIC_BASE_URL": "https://cds example.org"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org:"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org:0"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org?"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org/#"}, "error: CDS_PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ({"CDS_CORS_ORIGINS": "*", "CDS_AUTH": "jwt"}, "error: configuration: CDS_CORS_ORIGINS='*' needs CDS_AUTH=off"),
        ({"CDS_DATABASE_RETRY_SECONDS": "inf"}, "error: CDS_DATABASE_RETRY_SECONDS: Input should be a finite number"),
        ({"CDS_DATABASE_RETRY_SECONDS": "301"}, "error: CDS_DATABASE_RETRY_SECONDS: Input should be less than or equal to 300"),
        ({"CDS_DATABASE_RETRY_SECONDS": "1e-9"}, "error: CDS_DATABASE_RETRY_SECONDS: Input should be greater than or equal to 0.05"),
        ({"CDS_PATIENT_KEY": ""}, "error: CDS_PATIENT_KEY: is set but empty; unset it to use CDS_PATIENT_KEY_FILE"),
        ({"CDS_PATIENT_KEY": " \n"}, "error: CDS_PATIENT_KEY: is set but empty"),
        ({"CDS_FHIR_TIMEOUT_SECONDS": "nan"}, "error: CDS_FHIR_TIMEOUT_SECONDS: Input should be a finite number"),
        ({"CDS_DATABASE_RETRY_SECONDS": "nan"}, "error: CDS_DATABASE_RETRY_SECONDS: Input should be a finite number"),
        ({"CDS_RULES_DIR": ""}, "error: CDS_RULES_DIR: is set but empty; unset it to use the catalogue shipped in rules/"),
        ({"CDS_LOG_LEVEL": "verbose"}, "error: CDS_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ({"CDS_LOG_LEVEL": ""}, "error: CDS_LOG_LEVEL: Input should be 'DEBUG'"),
    ],
)
def test_bad_settings_are_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    """What ``serve`` (and ``db upgrade``) print and exit 2 with: ``main`` prints a UsageError as one line."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError) as refused:
        load_settings()
    assert f"error: {refused.value}".startswith(expected) and "\n" not in str(refused.value)


@pytest.mark.parametrize(("value", "level"), [("debug", "DEBUG"), (" Warning ", "WARNING"), ("warn", "WARNING"), ("fatal", "CRITICAL")])
def test_log_level_names_are_taken_in_any_case(monkeypatch: pytest.MonkeyPatch, value: str, level: str) -> None:
    monkeypatch.setenv("CDS_LOG_LEVEL", value)
    assert load_settings().log_level == level


@pytest.mark.parametrize(
    ("key", "key_file_text", "expected"),
    [
        ("short", None, "CDS_PATIENT_KEY: the patient key must be at least 16 bytes"),
        (None, "abc", "the patient key must be at least 16 bytes"),
        (None, None, "cannot read or create the key"),
    ],
    ids=["short-key", "short-key-file", "unreadable-key-file"],
)
def test_an_unusable_patient_key_stops_the_start_with_one_line(
    make_settings: SettingsFactory, tmp_path: Path, key: str | None, key_file_text: str | None, expected: str
) -> None:
    key_file = tmp_path / "patient-key"
    if key_file_text is not None:
        key_file.write_text(key_file_text)
    else:
        key_file = tmp_path / "a-file" / "patient-key"
        (tmp_path / "a-file").write_text("")  # a file where the key's directory should be
    with pytest.raises(ConfigError, match=expected):
        create_app(make_settings(patient_key=key, patient_key_file=key_file))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg2://cds@127.0.0.1/cds", "CDS_DATABASE_URL: driver 'psycopg2' is not installed"),
        ("mysql://cds@127.0.0.1/cds", "CDS_DATABASE_URL: unsupported database 'mysql'"),
        ("sqlite://", "CDS_DATABASE_URL: in-memory SQLite is not supported"),
    ],
)
def test_an_unusable_database_url_stops_the_start_with_one_line(make_settings: SettingsFactory, url: str, expected: str) -> None:
    """Found when the app is built, as the other settings are; from the lifespan it was uvicorn's traceback."""
    with pytest.raises(ConfigError, match=expected):
        create_app(make_settings(database_url=url))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "--port", "abc"], "error: back-knee-cds serve: argument --port: invalid int value: 'abc'"),
        (["evaluate", "x.json", "--format", "xml"], "error: back-knee-cds evaluate: argument --format: invalid choice: 'xml'"),
        (["frobnicate"], "error: back-knee-cds: argument command: invalid choice: 'frobnicate'"),
        (["db", "upgrade", "--wait", "nan"], "error: back-knee-cds db upgrade: argument --wait: expected a number of seconds, 0 or more, got 'nan'"),
        (["db", "upgrade", "--wait", "-5"], "error: back-knee-cds db upgrade: argument --wait: expected a number of seconds, 0 or more, got '-5'"),
        (["db", "upgrade", "--wait", "soon"], "error: back-knee-cds db upgrade: argument --wait: expected a number of seconds"),
    ],
)
def test_argument_errors_are_one_line_too(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, *argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith(expected) and err.count("\n") == 1
