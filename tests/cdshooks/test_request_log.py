"""One log line per HTTP request: written by the app once the request is answered, errors and
non-hook endpoints included, with what uvicorn's access line said plus the duration and, for a
hook call, its hookInstance, service, patient hash prefix and number of cards."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from robustness.served import serve, service_env, upgrade_database
from service.app import create_app
from service.logs import configure_logging
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request
from tests.conftest import SettingsFactory

URL = "/cds-services/back-knee-risk-factors"


@pytest.fixture
def json_lines(restore_logging: None) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    yield stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def _request_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in _lines(stream) if line["logger"] == "service.access"]


def test_a_hook_call_is_one_line_with_its_request_and_its_answer(make_settings: SettingsFactory, json_lines: io.StringIO) -> None:
    body = hook_request(prefetch=EMPTY_PREFETCH)
    with TestClient(create_app(make_settings()), base_url="http://testserver") as client:
        response = client.post(URL + "?trace=1", json=body)
    assert response.status_code == 200
    (line,) = [line for line in _lines(json_lines) if line.get("request_id") and line["level"] == "info"]
    assert line["event"] == "hook answered" and line["logger"] == "service.access"
    assert line["method"] == "POST" and line["path"] == URL + "?trace=1" and line["status"] == 200
    assert line["hookInstance"] == body["hookInstance"] and line["service"] == "back-knee-risk-factors"
    assert len(line["patient"]) == 16 and line["cards"] == 0
    assert isinstance(line["ms"], float) and line["ms"] > 0
    assert len(line["request_id"]) == 16 and line["client_addr"].startswith("testclient:") and line["http_version"] == "1.1"


def test_errors_and_other_endpoints_get_their_line_too(make_settings: SettingsFactory, json_lines: io.StringIO) -> None:
    wrong_hook = hook_request(prefetch=EMPTY_PREFETCH, hook="order-sign")
    with TestClient(create_app(make_settings()), base_url="http://testserver") as client:
        responses = [
            client.post(URL, content=b"{not json", headers={"content-type": "application/json"}),
            client.post(URL, json=wrong_hook),
            client.post("/cds-services/nope", json=hook_request(prefetch=EMPTY_PREFETCH)),
            client.get("/cds-services"),
            client.get("/health/live"),
        ]
    assert [response.status_code for response in responses] == [400, 400, 404, 200, 200]
    lines = [line for line in _request_lines(json_lines) if line["path"] != "/health/ready"]
    assert [(line["event"], line["method"], line["path"], line["status"]) for line in lines] == [
        ("request answered", "POST", URL, 400),
        ("request answered", "POST", URL, 400),
        ("request answered", "POST", "/cds-services/nope", 404),
        ("request answered", "GET", "/cds-services", 200),
        ("request answered", "GET", "/health/live", 200),
    ]
    assert lines[1]["hookInstance"] == wrong_hook["hookInstance"], "a hook call refused after its body was read names it"
    assert len({line["request_id"] for line in lines}) == len(lines)
    # The client can quote the id of its call; an error's line says what the client was told.
    assert [response.headers["x-request-id"] for response in responses] == [line["request_id"] for line in lines]
    assert [line.get("error") for line in lines] == [response.json().get("error")[:128] if response.status_code >= 400 else None for response in responses]
    assert lines[1]["error"].startswith("service 'back-knee-risk-factors' does not serve hook 'order-sign'")


def _break_the_gatherer(app: Any) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("gatherer broke")

    app.state.cds.gatherer.gather = broken


def test_a_request_the_app_fails_on_is_logged_as_500(make_settings: SettingsFactory, json_lines: io.StringIO) -> None:
    app = create_app(make_settings())
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        _break_the_gatherer(app)
        response = client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH))
    assert response.status_code == 500 and "failed on this request" in response.json()["error"]
    (line,) = [line for line in _request_lines(json_lines) if line["path"] == URL]
    assert line["event"] == "request answered" and line["status"] == 500
    # The client can quote the request id; the traceback is in the log, on a line with that id.
    (failure,) = [line for line in _lines(json_lines) if line["event"] == "request failed"]
    assert response.headers["x-request-id"] == line["request_id"] == failure["request_id"]
    assert "RuntimeError: gatherer broke" in failure["exception"] and failure["level"] == "error"
    assert line["error"] == response.json()["error"]


def test_a_500_reaches_an_allowed_browser_origin(make_settings: SettingsFactory) -> None:
    """Answered inside CORS: a browser client (the sandbox) reads the JSON 500, not a CORS failure."""
    app = create_app(make_settings(auth="off", cors_origins=["https://ehr.example"]))
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        _break_the_gatherer(app)
        response = client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH), headers={"Origin": "https://ehr.example"})
    assert response.status_code == 500 and response.headers["access-control-allow-origin"] == "https://ehr.example"


def test_in_text_format_the_request_id_is_on_the_failure_line_above_its_traceback(
    make_settings: SettingsFactory, restore_logging: None
) -> None:
    stream = io.StringIO()
    configure_logging("text", "INFO", stream=stream)
    app = create_app(make_settings())
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        _break_the_gatherer(app)
        request_id = client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH)).headers["x-request-id"]
    lines = stream.getvalue().splitlines()
    (failed,) = [index for index, line in enumerate(lines) if "service.failures: request failed" in line]
    assert f"request_id={request_id}" in lines[failed]
    assert lines[failed + 1] == "Traceback (most recent call last):"
    assert "RuntimeError: gatherer broke" in lines


def test_served_requests_have_one_line_each_and_no_uvicorn_access_line(tmp_path: Path) -> None:
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'cds.sqlite3'}", CDS_LOG_LEVEL="INFO")
    upgrade_database(env)
    log_path = tmp_path / "server.log"
    with serve(env, log_path=log_path) as served:
        statuses = [
            httpx.post(served.base_url + URL, json=hook_request(prefetch=EMPTY_PREFETCH)).status_code,
            httpx.post(served.base_url + URL, content=b"[]").status_code,
            httpx.get(served.base_url + "/cds-services").status_code,
        ]
    assert statuses == [200, 400, 200]
    lines = _served_lines(log_path)
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    answered = [(line["event"], line["path"], line["status"]) for line in lines if line["logger"] == "service.access"]
    assert answered[-3:] == [("hook answered", URL, 200), ("request answered", URL, 400), ("request answered", "/cds-services", 200)]


def test_each_of_several_workers_writes_json_lines_and_request_lines(tmp_path: Path) -> None:
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'cds.sqlite3'}", CDS_LOG_LEVEL="INFO")
    upgrade_database(env)
    log_path = tmp_path / "server.log"
    with serve(env, log_path=log_path, workers=2) as served:
        statuses = [httpx.post(served.base_url + URL, json=hook_request(prefetch=EMPTY_PREFETCH)).status_code for _ in range(4)]
        # serve() waits for one worker to answer; on a slow machine the other may still be starting.
        deadline = time.monotonic() + 20
        while log_path.read_text().count("AUTHENTICATION IS OFF") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert statuses == [200] * 4
    text = log_path.read_text()
    assert [line for line in text.splitlines() if not line.startswith("{")] == [], "every line JSON (CDS_LOG_FORMAT)"
    lines = _served_lines(log_path)
    assert len([line for line in lines if line["event"].startswith("AUTHENTICATION IS OFF")]) == 2  # one per worker
    assert [line["status"] for line in _hook_call_lines(log_path)] == [200] * 4


def test_a_client_gone_before_its_whole_body_is_a_400_line_not_a_traceback(tmp_path: Path) -> None:
    """An aborted upload, and chunked framing uvicorn refuses (it answers 400 and closes itself)."""
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'cds.sqlite3'}", CDS_LOG_LEVEL="INFO")
    upgrade_database(env)
    log_path = tmp_path / "server.log"
    head = f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with serve(env, log_path=log_path) as served:
        port = int(served.base_url.rsplit(":", 1)[1])
        for raw in (f"{head}Content-Length: 1000\r\n\r\n{{\"hook\": ", f"{head}Transfer-Encoding: chunked\r\n\r\n5\r\n{{\"a\":\r\nzz\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(raw.encode())
                time.sleep(0.2)  # the app is reading the body when the connection goes
        deadline = time.monotonic() + 10
        while len(_hook_call_lines(log_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = [line for line in httpx.get(served.base_url + "/metrics").text.splitlines() if line.startswith("cds_requests_total{")]
    assert [line["status"] for line in _hook_call_lines(log_path)] == [400, 400]
    assert not [line for line in _served_lines(log_path) if line["level"] == "error" or "exception" in line]
    assert [line for line in metrics if 'status="400"' in line and line.endswith(" 2.0")]
    assert not [line for line in metrics if 'status="500"' in line]


def _served_lines(log_path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]


def _hook_call_lines(log_path: Path) -> list[dict[str, Any]]:
    return [line for line in _served_lines(log_path) if line["logger"] == "service.access" and line["path"] == URL]


def test_request_ids_differ_between_processes_forked_from_one_another() -> None:
    """Ids come from ``random``, which each forked worker reseeds: no two workers share a sequence."""
    import multiprocessing

    from service.logs import _new_request_id

    def draw(queue: multiprocessing.Queue[list[str]]) -> None:
        queue.put([_new_request_id() for _ in range(1000)])

    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    children = [context.Process(target=draw, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    drawn = [queue.get(timeout=30) for _ in children] + [[_new_request_id() for _ in range(1000)]]
    for child in children:
        child.join(timeout=30)
    assert len({request_id for ids in drawn for request_id in ids}) == 3000


def test_json_timestamps_read_as_datetime_formats_them() -> None:
    """The per-second cache of the JSON formatter writes what ``fromtimestamp(...).isoformat`` does,
    rounding at the microsecond included (x.9999996 is the next second)."""
    import random
    from datetime import UTC, datetime

    from service.logs import JsonFormatter

    formatter = JsonFormatter()
    base = 1_795_000_000
    moments = [base + 0.9999996, base + 0.0000004, base + 0.0005, base + 0.9995, base + 1.0, base + 59.999999]
    moments += [base + random.random() * 100_000 for _ in range(20_000)]
    for moment in sorted(moments) + moments[:50]:
        assert formatter._timestamp(moment) == datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds"), moment
