"""``GET /rules`` and ``GET /rules/{rule_id}``: the catalogue as JSON or as a clinician's page.

Every card links here (interface.md section 5), so a clinician's browser must get a page it can
read: what the rule checks, its thresholds, the article sentences it rests on, its version.
Programs get JSON (interface.md decision 9). The choice follows the ``Accept`` header; JSON
unless ``text/html`` is preferred. Everything on the HTML page is escaped.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import HTMLResponse, Response

from service.cdshooks.openapi_docs import ErrorBody
from service.cdshooks.public_url import public_base_url
from service.engine.catalogue import Catalogue
from service.engine.rules import Rule
from service.json_response import OrjsonResponse
from service.state import State

__all__ = ["router", "rule_json", "prefers_html"]

router = APIRouter(tags=["Rules"])


class RuleSummaryModel(BaseModel):
    """interface.md section 4: the catalogue as JSON gives each rule's thresholds and citation too."""

    id: str
    version: str
    title: str
    service: str
    indicator: str
    thresholds: dict[str, int | float]
    citation: list[str]
    url: str


class RuleListModel(BaseModel):
    catalogue_version: str
    rules: list[RuleSummaryModel]


class RuleModel(BaseModel):
    id: str
    version: str
    title: str
    service: str
    indicator: str
    checks: str
    condition: str
    facts: dict[str, str]
    thresholds: dict[str, int | float]
    summary: str
    advice: str
    citation: list[str]
    suggestions: list[dict[str, Any]]
    suppress_days: int
    catalogue_version: str


_HTML_OR_JSON = {"content": {"application/json": {}, "text/html": {"schema": {"type": "string"}}}}
# One URL, two representations chosen by Accept: a cache in front must key on it (RFC 9110 12.5.5).
_NEGOTIATED = {"Vary": "Accept"}


@router.get("/rules", response_model=RuleListModel, responses={200: _HTML_OR_JSON})
async def list_rules(request: Request, state: State) -> Response:
    """Every rule of the catalogue (JSON, or an HTML index when the client prefers ``text/html``)."""
    catalogue = state.catalogue
    if prefers_html(request.headers.get("accept")):
        return HTMLResponse(_index_page(catalogue), headers=_NEGOTIATED)
    base = public_base_url(state, request)  # as card links are: right behind a proxy's path prefix too
    return OrjsonResponse(
        {
            "catalogue_version": catalogue.version,
            "rules": [
                {
                    "id": rule.id,
                    "version": rule.version,
                    "title": rule.title,
                    "service": rule.service,
                    "indicator": rule.indicator,
                    "thresholds": dict(rule.thresholds),
                    "citation": list(rule.citations),
                    "url": f"{base}/rules/{rule.id}",
                }
                for rule in catalogue.rules
            ],
        },
        headers=_NEGOTIATED,
    )


@router.get(
    "/rules/{rule_id}",
    response_model=RuleModel,
    responses={200: _HTML_OR_JSON, 404: {**_HTML_OR_JSON, "model": ErrorBody, "description": "No rule with that id; the body says so"}},
)
async def show_rule(rule_id: str, request: Request, state: State) -> Response:
    """One rule: what it checks, thresholds, citations, version."""
    catalogue = state.catalogue
    rule = catalogue.rule(rule_id)
    wants_html = prefers_html(request.headers.get("accept"))
    if rule is None:
        message = f"no rule with id '{rule_id}'; GET /rules lists them"
        if wants_html:
            return HTMLResponse(_page("Rule not found", f"<p>{html.escape(message)}</p>"), status_code=404, headers=_NEGOTIATED)
        return OrjsonResponse({"error": message}, status_code=404, headers=_NEGOTIATED)
    if wants_html:
        return HTMLResponse(_rule_page(rule, catalogue), headers=_NEGOTIATED)
    return OrjsonResponse(rule_json(rule, catalogue), headers=_NEGOTIATED)


def rule_json(rule: Rule, catalogue: Catalogue) -> dict[str, Any]:
    """The JSON form of one rule (interface.md decision 9: id, version, title, service, thresholds, citation)."""
    return {
        "id": rule.id,
        "version": rule.version,
        "title": rule.title,
        "service": rule.service,
        "indicator": rule.indicator,
        "checks": rule.checks,
        "condition": rule.condition.describe(),
        "facts": {name: catalogue.facts[name].description for name in rule.fact_names()},
        "thresholds": dict(rule.thresholds),
        "summary": rule.summary.text,
        "advice": rule.advice.text,
        "citation": list(rule.citations),
        "suggestions": [
            {
                "label": item.label,
                "recommended": item.recommended,
                "text": item.text,
                **({"code": {"system": item.code.system, "code": item.code.code, "display": item.code.display}} if item.code else {}),
            }
            for item in rule.suggestions
        ],
        "suppress_days": rule.suppress_days,
        "catalogue_version": catalogue.version,
    }


def prefers_html(accept: str | None) -> bool:
    """True when ``text/html`` has a higher quality than JSON in the Accept header (RFC 9110 12.5.1)."""
    if not accept:
        return False
    best_html = best_json = 0.0
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        if media == "text/html":
            best_html = max(best_html, quality)
        elif media in ("application/json", "application/*"):
            best_json = max(best_json, quality)
        elif media == "*/*":
            best_json = max(best_json, quality * 0.999)  # a wildcard alone means: the default, JSON
    return best_html > best_json


# --- HTML ----------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.5;color:#1b1b1b}blockquote{border-left:4px solid #999;margin:0.5rem 0;"
        "padding:0.2rem 1rem;color:#333}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:0.2rem 0.6rem;text-align:left}code{background:#f3f3f3;padding:0 0.2rem}"
        ".meta{color:#555}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _index_page(catalogue: Catalogue) -> str:
    # Links relative to the page (here and on a rule's page): right under any path prefix a proxy adds.
    rows = "".join(
        f"<tr><td><a href=\"rules/{_e(rule.id)}\">{_e(rule.title)}</a></td><td><code>{_e(rule.id)}</code></td>"
        f"<td>{_e(rule.version)}</td><td>{_e(rule.indicator)}</td><td>{_e(rule.service)}</td></tr>"
        for rule in catalogue.rules
    )
    body = (
        "<h1>back-knee-cds rule catalogue</h1>"
        f"<p class=\"meta\">Catalogue version {_e(catalogue.version)}. Source: {_e(catalogue.source_label)}.</p>"
        "<table><thead><tr><th>Rule</th><th>Id</th><th>Version</th><th>Indicator</th><th>Service</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return _page("back-knee-cds rules", body)


def _rule_page(rule: Rule, catalogue: Catalogue) -> str:
    facts = "".join(
        f"<li><code>{_e(name)}</code>: {_e(catalogue.facts[name].description)}</li>" for name in rule.fact_names()
    )
    thresholds = (
        "<table><thead><tr><th>Parameter</th><th>Value</th></tr></thead><tbody>"
        + "".join(f"<tr><td><code>{_e(name)}</code></td><td>{_e(value)}</td></tr>" for name, value in rule.thresholds.items())
        + "</tbody></table>"
        if rule.thresholds
        else "<p>This rule has no numeric thresholds.</p>"
    )
    citations = "".join(f"<blockquote>{_e(sentence)}</blockquote>" for sentence in rule.citations)
    suggestions = (
        "<ul>"
        + "".join(
            f"<li>{_e(item.label)}: {_e(item.text)}"
            + (f" (<code>{_e(item.code.system)}|{_e(item.code.code)}</code> {_e(item.code.display)})" if item.code else " (no code)")
            + "</li>"
            for item in rule.suggestions
        )
        + "</ul>"
        if rule.suggestions
        else "<p>None.</p>"
    )
    body = (
        f"<h1>{_e(rule.title)}</h1>"
        f"<p class=\"meta\">Rule <code>{_e(rule.id)}</code>, version {_e(rule.version)}; service "
        f"<code>{_e(rule.service)}</code>; indicator {_e(rule.indicator)}; catalogue version {_e(catalogue.version)}.</p>"
        f"<h2>What it checks</h2><p>{_e(rule.checks)}</p>"
        f"<p>Condition: <code>{_e(rule.condition.describe())}</code></p>"
        f"<h2>Facts it uses</h2><ul>{facts}</ul>"
        f"<h2>Thresholds</h2>{thresholds}"
        f"<h2>What the card advises</h2>{_markdown_blocks(rule.advice.text)}"
        f"<h2>Suggested orders</h2>{suggestions}"
        f"<h2>From the source article</h2>{citations}"
        f"<p class=\"meta\">After an override with a suppressing reason, the card is not shown again for this "
        f"patient for {_e(rule.suppress_days)} days.</p>"
        "<p><a href=\"../rules\">All rules</a></p>"
    )
    return _page(f"{rule.title} ({rule.id} v{rule.version})", body)


def _markdown_blocks(text: str) -> str:
    """Paragraphs and ``- `` lists of the catalogue's advice text, escaped (no inline markup)."""
    blocks = []
    for block in text.strip().split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if lines and all(line.startswith("- ") for line in lines):
            blocks.append("<ul>" + "".join(f"<li>{_e(line[2:])}</li>" for line in lines) + "</ul>")
        elif lines:
            blocks.append(f"<p>{_e(' '.join(lines))}</p>")
    return "".join(blocks)
