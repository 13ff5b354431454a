"""``GET /rules`` and ``GET /rules/{rule_id}``: JSON for programs, an escaped HTML page for clinicians."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from service.api.rules_pages import prefers_html
from service.app import create_app
from tests.conftest import REPO_ROOT, SettingsFactory

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_list_rules_json(client: TestClient) -> None:
    response = client.get("/rules")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    rules = response.json()["rules"]
    assert len(rules) == 9
    assert rules[0] == {
        "id": "risk-factors",
        "version": "1.0.2",
        "title": "Risk factors for lower back and knee pain",
        "service": "back-knee-risk-factors",
        "indicator": "info",
        "thresholds": {"older_age_years": 50, "overweight_bmi": 25, "bmi_window_days": 730},
        "citation": rules[0]["citation"],
        "url": "http://testserver/rules/risk-factors",
    }
    one = client.get("/rules/risk-factors", headers={"accept": "application/json"}).json()
    assert all(rule["citation"] for rule in rules) and rules[0]["citation"] == one["citation"]
    assert rules[0]["thresholds"] == one["thresholds"]


def test_one_rule_json(client: TestClient) -> None:
    body = client.get("/rules/weight-management", headers={"accept": "application/json"}).json()
    assert {"id", "version", "title", "service", "thresholds", "citation"} <= set(body)
    assert body["id"] == "weight-management" and body["version"] == "1.0.0"
    assert body["service"] == "back-knee-care-guidance"
    assert body["thresholds"] == {"overweight_bmi": 25, "weight_gain_percent": 5, "weight_gain_window_days": 365, "bmi_window_days": 730}
    assert "Weight loss can help alleviate knee pain for individuals who are overweight or have obesity." in body["citation"]
    assert body["condition"] == "((excess_weight or recent_weight_gain) and (back_complaint or knee_complaint))"
    assert body["summary"].startswith("{reasons}:")
    assert body["suppress_days"] == 90
    assert set(body["facts"]) >= {"excess_weight", "recent_weight_gain", "back_complaint", "knee_complaint"}


def test_unknown_rule_is_404_with_error(client: TestClient) -> None:
    response = client.get("/rules/no-such-rule")
    assert response.status_code == 404
    assert response.json() == {"error": "no rule with id 'no-such-rule'; GET /rules lists them"}
    page = client.get("/rules/<script>x", headers={"accept": BROWSER})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text and "&lt;script&gt;x" in page.text


def test_rule_page_for_a_browser(client: TestClient) -> None:
    response = client.get("/rules/post-injury-back-pain", headers={"accept": BROWSER})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.startswith("<!DOCTYPE html>")
    assert "<h1>Back pain after an injury: doctor&#x27;s evaluation and imaging</h1>" in page
    assert "version 1.0.1" in page
    assert "<h2>What it checks</h2>" in page and "<h2>Thresholds</h2>" in page
    assert "<code>post_injury_window_days</code></td><td>90</td>" in page
    assert "<blockquote>Anyone experiencing lower back pain after an injury should visit a doctor.</blockquote>" in page
    assert "http://snomed.info/sct|241645008" in page


def test_rule_index_page_for_a_browser(client: TestClient) -> None:
    page = client.get("/rules", headers={"accept": BROWSER}).text
    assert page.count('<a href="rules/') == 9


def test_links_stay_under_the_public_base_urls_path(make_settings: SettingsFactory) -> None:
    """Behind a proxy serving the service under a path: JSON URLs absolute from CDS_PUBLIC_BASE_URL,
    page links relative (resolved against the page's own URL, which carries the prefix)."""
    settings = make_settings(public_base_url="https://ehr-proxy.example.org/back-knee")
    with TestClient(create_app(settings)) as client:
        rules = client.get("/rules").json()["rules"]
        assert rules[0]["url"] == "https://ehr-proxy.example.org/back-knee/rules/risk-factors"
        index = client.get("/rules", headers={"accept": BROWSER}).text
        page = client.get("/rules/risk-factors", headers={"accept": BROWSER}).text
    assert '<a href="rules/risk-factors">' in index and 'href="/' not in index
    assert '<a href="../rules">All rules</a>' in page and 'href="/' not in page


def test_a_cache_is_told_the_representation_depends_on_accept(client: TestClient) -> None:
    for path in ("/rules", "/rules/risk-factors", "/rules/no-such-rule"):
        for accept in (BROWSER, "application/json"):
            assert client.get(path, headers={"accept": accept}).headers.get("vary") == "Accept", (path, accept)


def test_catalogue_text_is_escaped_on_the_page(make_settings: SettingsFactory, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    path = rules / "rules" / "sciatica-guidance.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["title"] = "Sciatica <script>alert('x')</script>"
    data["checks"] = "Checks <img src=x onerror=alert(1)> & more"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with TestClient(create_app(make_settings(rules_dir=rules))) as client:
        page = client.get("/rules/sciatica-guidance", headers={"accept": "text/html"}).text
    assert "<script>" not in page and "<img" not in page
    assert html.escape("Sciatica <script>alert('x')</script>") in page
    assert "Checks &lt;img src=x onerror=alert(1)&gt; &amp; more" in page


def test_accept_negotiation() -> None:
    assert prefers_html(BROWSER)
    assert prefers_html("text/html")
    assert not prefers_html(None)
    assert not prefers_html("*/*")
    assert not prefers_html("application/json")
    assert not prefers_html("application/json, text/html;q=0.5")
    assert prefers_html("application/json;q=0.4, text/html")
    assert not prefers_html("text/html;q=bogus")
