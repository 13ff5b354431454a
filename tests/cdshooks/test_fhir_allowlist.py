"""CDS_FHIR_SERVER_ALLOWLIST matching: parsed and normalised URLs, never string prefixes."""

from __future__ import annotations

import pytest

from service.cdshooks.fhir_allowlist import ServerAllowlist, UrlRefused, parse_server_url
from service.config_error import ConfigError

ALLOWLIST = ServerAllowlist(["https://ehr.example.org/fhir", "http://127.0.0.1:8900", "https://[::1]:9443/r4/"])


def admits(url: str) -> bool:
    try:
        return ALLOWLIST.admits(parse_server_url(url))
    except UrlRefused:
        return False


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir",
        "https://ehr.example.org/fhir/",
        "https://EHR.Example.ORG/fhir",
        "HTTPS://ehr.example.org/fhir",
        "https://ehr.example.org:443/fhir",
        "https://ehr.example.org./fhir",
        "https://ehr.example.org/fhir/tenant-a",
        "https://ehr.example.org/%66hir",
        "http://127.0.0.1:8900",
        "http://127.0.0.1:8900/any/path",
        "https://[::1]:9443/r4",
        "https://[0:0:0:0:0:0:0:1]:9443/r4/x",
    ],
)
def test_servers_under_an_entry_are_admitted(url: str) -> None:
    assert admits(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org.evil.com/fhir",
        "https://evil.com/ehr.example.org/fhir",
        "https://ehr.example.org@evil.com/fhir",
        "https://user:pw@ehr.example.org/fhir",
        "https://ehr.example.org/fhirx",
        "https://ehr.example.org/fhi",
        "https://ehr.example.org/",
        "https://ehr.example.org/fhir/../admin",
        "https://ehr.example.org/fhir/%2e%2e/admin",
        # Tomcat and Spring drop ';' parameters, then read these as '..' (or '.', or '//').
        "https://ehr.example.org/fhir/..;/admin",
        "https://ehr.example.org/fhir/%2e%2e;x=1/admin",
        "https://ehr.example.org/fhir/.;/x",
        "https://ehr.example.org/fhir/;x/admin",
        "https://ehr.example.org/fhir/a%2fb",
        "https://ehr.example.org/fhir//x",
        "https://ehr.example.org:8443/fhir",
        "http://ehr.example.org/fhir",
        "https://xn--ehr-example-org.evil/fhir",
        "https://ehr.example.org\\@evil.com/fhir",
        "https://ehr.example.org/fhir?x=1",
        "https://ehr.example.org/fhir#x",
        " https://ehr.example.org/fhir",
        "https://ehr.example.org/fhir\n",
        "https://ehr.exämple.org/fhir",
        "http://127.0.0.1:8901",
        "http://127.0.0.1",
        "https://127.0.0.1:8900",
        "http://127.1:8900",
        "http://2130706433:8900",
        "http://localhost:8900",
        "ftp://ehr.example.org/fhir",
        "//ehr.example.org/fhir",
        "ehr.example.org/fhir",
        "https://ehr.example.org:99999/fhir",
        "",
    ],
)
def test_look_alikes_and_other_servers_are_refused(url: str) -> None:
    assert not admits(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://ehr.example.org/fhir", "must use https"),
        ("https://u:p@ehr.example.org/fhir", "user info"),
        ("https://ehr.example.org/a/../b", "'..'"),
        ("https://ehr.example.org/fhir?x", "query"),
        ("https://ehr.example.org:x/fhir", "cannot be parsed"),
    ],
)
def test_refusals_say_why_without_echoing_the_url(url: str, message: str) -> None:
    with pytest.raises(UrlRefused, match=message) as refused:
        parse_server_url(url)
    assert "u:p" not in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost"])
def test_http_is_allowed_only_for_loopback_hosts(host: str) -> None:
    assert parse_server_url(f"http://{host}:8080/fhir").scheme == "http"


def test_a_path_parameter_on_an_ordinary_segment_is_kept() -> None:
    assert parse_server_url("https://ehr.example.org/fhir;v=4/").segments == ("fhir;v=4",)


def test_normalised_base_is_what_was_checked() -> None:
    assert parse_server_url("HTTPS://EHR.example.org.:443/%66hir/").base == "https://ehr.example.org/fhir"
    assert parse_server_url("http://[0::1]:80/r4").base == "http://[::1]/r4"


@pytest.mark.parametrize(
    ("relative", "joined"),
    [
        ("Patient/123", "https://ehr.example.org/fhir/Patient/123"),
        ("Condition?patient=123", "https://ehr.example.org/fhir/Condition?patient=123"),
        ("Observation?code=http://loinc.org|39156-5", "https://ehr.example.org/fhir/Observation?code=http://loinc.org|39156-5"),
    ],
)
def test_queries_join_under_the_server(relative: str, joined: str) -> None:
    assert parse_server_url("https://ehr.example.org/fhir/").join(relative).url == joined


@pytest.mark.parametrize(
    "relative", ["/Patient/1", "https://evil.com/Patient/1", "../Patient/1", "Patient/%2e%2e/x", "..;/admin/Patient/1", "Patient/..;x/x", "", "a b"]
)
def test_queries_that_would_leave_the_server_are_refused(relative: str) -> None:
    with pytest.raises(UrlRefused):
        parse_server_url("https://ehr.example.org/fhir").join(relative)


@pytest.mark.parametrize(
    ("entry", "message"),
    [("http://ehr.example.org", "must use https"), ("not a url", "whitespace"), ("https://ehr.example.org/?a=1", "query")],
)
def test_a_bad_allowlist_entry_fails_at_start_naming_the_setting(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"CDS_FHIR_SERVER_ALLOWLIST entry .*{message}"):
        ServerAllowlist([entry])


def test_an_empty_allowlist_admits_nothing() -> None:
    empty = ServerAllowlist([])
    assert not empty
    assert not empty.admits(parse_server_url("http://127.0.0.1:8900"))
