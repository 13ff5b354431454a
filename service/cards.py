"""Findings -> CDS Hooks cards that explain themselves (interface.md section 5, decision 8).

Each card says why it fired (the facts, with their resources as ``Type/id``, dates and values),
what the source advises, and the article sentences it rests on; it links to the rule's page
and offers the override reasons of the catalogue. Suggested orders are R4 ``ServiceRequest``
resources validated with ``fhir.resources.R4B`` before they leave: strict writer.

Patient data (labels, values, ids) is escaped before it enters markdown, so a Condition's
display text cannot inject links or HTML into a clinician's screen.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from service.cdshooks.models import Card, Coding, Source
from service.engine.catalogue import EVIDENCE_PLACEHOLDER, REASONS_PLACEHOLDER, Catalogue
from service.engine.evaluate import Finding, ShownReason
from service.engine.rules import Rule, SuggestionSpec
from service.engine.templates import SUMMARY_LIMIT, Template
from service.fhir.model import Evidence
from service.fhir.units import shown

__all__ = ["SUMMARY_LIMIT", "CardBuilder", "format_value", "new_uuid"]

# ServiceRequest.reasonReference may point at these (FHIR R4).
_REASON_TYPES = frozenset({"Condition", "Observation", "DiagnosticReport", "DocumentReference"})
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Characters that could start emphasis, code, links, HTML or tables inside a line of markdown.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
UNKNOWN_VALUE = "unknown"
# Evidence listed per fact on a card, in the fact's order (of a kind of Condition, the newest first),
# those with an id before those without; the rest are counted. A chart can hold dozens of Conditions
# of one kind (an encounter diagnosis per visit), and a card listing them all is hard to read: 12,000
# made a 3 MB answer. A suggestion's reasonReference points at as many of each fact's resources.
# The audit record keeps every one.
EVIDENCE_LISTED = 5

UuidFactory = Callable[[], str]


def new_uuid() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` writes it, without building a UUID (2.0 -> 0.9 us)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class CardBuilder:
    """Builds one catalogue's cards; what each rule's cards share is built once, with the builder.

    Built once per app (and per CLI run) beside the catalogue and passed in, like the catalogue.
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self._parts = {rule.id: _RuleParts.of(catalogue, rule) for rule in catalogue.rules}

    def card(self, finding: Finding, *, base_url: str, uuid_factory: UuidFactory = new_uuid) -> Card:
        rule = finding.rule
        parts = self._parts[rule.id]
        suggestions = _suggestions(finding, uuid_factory=uuid_factory)
        # One validation of a mapping, the link and suggestions inside it: calling Card(...) and Link(...) cost 0.6 us more.
        return Card.model_validate(
            {
                "uuid": uuid_factory(),
                "summary": _summary(finding, parts),
                "detail": _detail(finding, parts),
                "indicator": rule.indicator,
                "source": parts.source,
                "suggestions": suggestions or None,
                "selectionBehavior": rule.selection_behavior if suggestions else None,
                "overrideReasons": list(parts.override_reasons),
                "links": [{"label": parts.link_label, "url": f"{base_url.rstrip('/')}/rules/{rule.id}", "type": "absolute"}],
            }
        )


# --- what a rule's cards share -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RuleParts:
    """The parts of a rule's cards that do not depend on the patient: built once, then shared.

    Rebuilding them for every card (thresholds as text, advice, citations, the source and
    override-reason Codings) was about a third of a card's cost.
    """

    parameters: Mapping[str, str]  # the rule's thresholds as card text: {"older_age_years": "50"}
    source: Source
    override_reasons: tuple[Coding, ...]
    link_label: str
    # The detail's lines for the reasons whose text has no placeholder, by that text (~0.6 us each).
    fixed_reason_lines: Mapping[str, str]
    detail_end: str  # the detail after the reasons: advice, source, citations, rule version

    @classmethod
    def of(cls, catalogue: Catalogue, rule: Rule) -> _RuleParts:
        parameters = {name: f"{value:g}" if isinstance(value, float) else str(value) for name, value in rule.thresholds.items()}
        lines = ["", "**What the source advises:**", "", rule.advice.render(parameters, missing=_missing).strip(), ""]
        # Catalogue text (advice, label, citations) is trusted markdown; only patient data is escaped.
        lines += [f"**Source:** {catalogue.source_label}", ""]
        for index, citation in enumerate(rule.citations):
            if index:
                lines.append(">")
            lines.append(f"> \u201c{citation}\u201d")
        lines += ["", f"Rule `{rule.id}` version {rule.version}."]
        return cls(
            parameters=parameters,
            source=Source(
                label=catalogue.source_label,
                topic=Coding(system=catalogue.topic_system, code=rule.id, display=rule.title),
            ),
            override_reasons=tuple(
                Coding(system=catalogue.override_reason_system, code=reason.code, display=reason.display)
                for reason in catalogue.override_reasons
            ),
            link_label=f"About this rule: {rule.title} (v{rule.version})",
            fixed_reason_lines={
                reason.text.text: _reason_line(reason.text.text) for reason in rule.reasons if not reason.text.placeholders
            },
            detail_end="\n".join(lines),
        )


# --- text --------------------------------------------------------------------------------


def format_value(value: str | int | float) -> str:
    """A fact value as a clinician reads it: BMI 27.9, 6.2 %, 62 years."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):  # an absurd reading (1e300 kg) computes an infinite BMI: shown as such, never a 500
            return str(value)
        # ``shown``: one place, or two where one would round up to a whole number the value does
        # not reach (BMI 24.96, not 25.0). Facts hold values shown already; this is idempotent.
        return str(shown(Decimal(repr(value))))
    return str(value)


def _reason_values(
    shown: ShownReason, template: Template, parameters: Mapping[str, str], escape: Callable[[str], str]
) -> dict[str, str]:
    """The text of each placeholder ``template`` names, for one reason (only those: most go unused).

    A name means, first to last: the fact's evidence labels, one of its values, a threshold.
    """
    fact = shown.fact
    values: dict[str, str] = {}
    for name in template.placeholders:
        if name == EVIDENCE_PLACEHOLDER:
            values[name] = _listed_labels(fact.evidence, escape) or UNKNOWN_VALUE
        elif name in fact.values:
            values[name] = escape(format_value(fact.values[name]))
        elif name in parameters:
            values[name] = parameters[name]
    return values


def _listed(evidence: tuple[Evidence, ...]) -> tuple[Evidence, ...]:
    """The evidence a card lists: the first ``EVIDENCE_LISTED``, those with an id first, so a
    card whose fact rests on an identifiable resource names it (interface.md decision 8)."""
    if len(evidence) <= EVIDENCE_LISTED:
        return evidence
    return tuple(sorted(evidence, key=lambda item: not item.reference)[:EVIDENCE_LISTED])  # stable: order kept


def _listed_labels(evidence: tuple[Evidence, ...], escape: Callable[[str], str]) -> str:
    labels = "; ".join(escape(item.label) for item in _listed(evidence))
    return f"{labels}; {_more(evidence)}" if len(evidence) > EVIDENCE_LISTED else labels


def _more(evidence: tuple[Evidence, ...]) -> str:
    return f"and {len(evidence) - EVIDENCE_LISTED:,} more, not listed"


_NO_VALUES: Mapping[str, str] = MappingProxyType({})


def _missing(_name: str) -> str:
    return UNKNOWN_VALUE


def _summary(finding: Finding, parts: _RuleParts) -> str:
    rule = finding.rule
    phrases: list[str] = []
    for item in finding.reasons:  # a loop, and no values gathered for a phrase without placeholders: 2.5 -> 2.0 us
        summary = item.reason.summary
        if summary is not None:
            values = _reason_values(item, summary, parts.parameters, _plain) if summary.placeholders else _NO_VALUES
            phrases.append(summary.render(values, missing=_missing))
    values = {**parts.parameters, REASONS_PLACEHOLDER: ", ".join(phrases) or rule.title}
    text = _one_line(rule.summary.render(values, missing=_missing))
    text = text[:1].upper() + text[1:]
    if len(text) > SUMMARY_LIMIT:
        cut = text[: SUMMARY_LIMIT - 1]
        text = (cut.rsplit(" ", 1)[0] if " " in cut[40:] else cut).rstrip(",;: ") + "…"
    return text


def _detail(finding: Finding, parts: _RuleParts) -> str:
    lines = [f"**Why this card** (as of {finding.today.isoformat()}):", ""]
    for item in finding.reasons:
        text = item.reason.text
        if text.placeholders:
            lines.append(_reason_line(text.render(_reason_values(item, text, parts.parameters, _escape), missing=_missing)))
        else:
            lines.append(parts.fixed_reason_lines[text.text])
        evidence = item.fact.evidence
        for listed in _listed(evidence):
            lines.append(f"  - {_evidence_line(listed)}")
        if len(evidence) > EVIDENCE_LISTED:
            lines.append(f"  - {_more(evidence)}")
    lines.append(parts.detail_end)
    return "\n".join(lines)


def _reason_line(text: str) -> str:
    return "- " + _one_line(text)


def _evidence_line(evidence: Evidence) -> str:
    reference, label = evidence.reference, evidence.label
    if reference and _FHIR_ID.match(evidence.resource_id or "") and evidence.resource_type.isalpha():
        line = f"`{reference}`: {_escape(label)}"
    elif reference:
        line = f"{_escape(reference)}: {_escape(label)}"
    else:
        line = f"{_escape(evidence.resource_type)} (no id): {_escape(label)}"
    # The label may already say the date or value ("Birth date 1958-02-24"): say each once. A date
    # says what it is: an onset and the day a Condition was charted differ by years in old charts.
    if evidence.date is not None and (day := evidence.day_shown or evidence.date.isoformat()) not in label:
        line += f", {evidence.dated} {day}" if evidence.dated else f", {day}"
    if evidence.value and evidence.value not in label:
        line += f", {_escape(evidence.value)}"
    return line


def _escape(text: str) -> str:
    """Text from patient data, safe inside GitHub-flavoured markdown (no links, HTML or emphasis)."""
    line = _one_line(text)
    # Most text has nothing to escape, and a search costs a quarter of a substitution.
    return _MARKDOWN_SPECIAL.sub(r"\\\1", line) if _MARKDOWN_SPECIAL.search(line) else line


def _plain(text: str) -> str:
    return _one_line(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- suggestions -------------------------------------------------------------------------


def _suggestions(finding: Finding, *, uuid_factory: UuidFactory) -> list[dict[str, Any]]:
    """The rule's suggested ServiceRequests, as the card's mapping holds them (its validation makes them
    ``Suggestion``s); none when the patient has no usable id to be their subject."""
    patient_id = finding.patient_id
    if not finding.rule.suggestions or patient_id is None or not _FHIR_ID.match(patient_id):
        return []
    reasons = [
        {"reference": item.reference, "display": _one_line(item.label)[:200]}
        for item in finding.supporting_evidence(per_fact=EVIDENCE_LISTED, only=_is_reason)
    ]
    return [
        {
            "label": spec.label,
            "uuid": uuid_factory(),
            "isRecommended": spec.recommended,
            "actions": [
                {
                    "type": "create",
                    "description": spec.text,
                    "resource": _service_request(spec, finding=finding, patient_id=patient_id, reasons=reasons),
                }
            ],
        }
        for spec in finding.rule.suggestions
    ]


def _is_reason(item: Evidence) -> bool:
    """Whether a ServiceRequest's reasonReference may point at this evidence."""
    return item.resource_type in _REASON_TYPES and item.resource_id is not None and _FHIR_ID.match(item.resource_id) is not None


def _service_request(
    spec: SuggestionSpec, *, finding: Finding, patient_id: str, reasons: list[dict[str, str]]
) -> dict[str, Any]:
    # Written in FHIR's element order, as the validated model dumps itself (tests/cards compares the two
    # as JSON for every rule): that dump cost ~100 us of a suggestion's ~180.
    code: dict[str, Any] = {"text": spec.text}
    if spec.code is not None:
        code = {"coding": [{"system": spec.code.system, "code": spec.code.code, "display": spec.code.display}], "text": spec.text}
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": spec.intent,
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if reasons:
        resource["reasonReference"] = [dict(reason) for reason in reasons]
    resource["note"] = [{"text": f"Suggested by back-knee-cds rule {finding.rule.id} version {finding.rule.version}."}]
    # Strict writer: what we emit must be valid R4 (raises on a bug in the rules or this module).
    ServiceRequest.model_validate(resource)
    return resource
