"""Loads the rule catalogue from ``rules/``: services, facts definitions, rules, card settings.

Everything is checked here, once, at start-up (and by ``back-knee-cds rules check``): the
schema of every file, that conditions and card texts name only facts and values that exist,
that every citation is a sentence of the source article, that every rule file is listed. A
broken catalogue stops the service from starting with a message naming file, rule and field;
it never degrades into "no cards" at the bedside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.catalogue_error import CatalogueError, from_validation_error, read_catalogue_yaml, validate_catalogue_file
from service.engine.conditions import ConditionError, parse_condition
from service.engine.rules import (
    FactSpec,
    Reason,
    RequestCode,
    Rule,
    RuleFile,
    SuggestionSpec,
)
from service.engine.templates import SUMMARY_LIMIT, Template, TemplateError
from service.fhir.definitions import FACTS_FILE, FactDefinitions, load_fact_definitions

__all__ = [
    "Catalogue",
    "OverrideReasonDefinition",
    "ServiceDefinition",
    "build_catalogue",
    "fact_specs",
    "load_catalogue",
]

# Placeholders every rule may use besides fact values and thresholds.
REASONS_PLACEHOLDER = "reasons"  # the card summary: the summary phrases of the reasons shown
EVIDENCE_PLACEHOLDER = "evidence"  # a reason line: the labels of its fact's evidence


class ServiceDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str
    hooks: list[str] = Field(min_length=1)
    prefetch: dict[str, str]

    def refuses_hook(self, hook: str) -> str | None:
        """Why this service refuses a call for ``hook`` (the service's 400 and the CLI's), or None."""
        if hook in self.hooks:
            return None
        return f"service '{self.id}' does not serve hook '{hook}'; it serves {', '.join(self.hooks)}"


class OverrideReasonDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    display: str = Field(min_length=1)
    suppresses: bool


class _OverrideReasonsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(pattern=r"^(https?://|urn:)\S+$")
    reasons: list[OverrideReasonDefinition] = Field(min_length=1)


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    topic_system: str = Field(pattern=r"^(https?://|urn:)\S+$")
    source_label: str = Field(min_length=1, max_length=200)
    article: str = Field(min_length=1)
    refers_back: dict[str, str] = Field(default_factory=dict)  # a sentence -> the one it speaks of
    override_reasons: _OverrideReasonsFile
    rules: list[str] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The loaded, checked catalogue; built once per app (or CLI run) and passed in."""

    version: str
    services: Mapping[str, ServiceDefinition]
    # The facts layer's own definitions (value sets, parameters), handed to compute_facts.
    fact_definitions: FactDefinitions
    rules: tuple[Rule, ...] = ()
    topic_system: str = ""
    source_label: str = ""
    override_reason_system: str = ""
    override_reasons: tuple[OverrideReasonDefinition, ...] = ()
    facts: Mapping[str, FactSpec] = field(default_factory=dict)
    article: str = ""
    # Indexes of ``rules`` built once with the catalogue: every call of a service asks for them.
    _rules_by_service: Mapping[str, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)
    _rule_order: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _facts_read: Mapping[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    _definitions_by_service: Mapping[str, FactDefinitions] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_service: dict[str, list[Rule]] = {}
        for rule in self.rules:
            by_service.setdefault(rule.service, []).append(rule)
        object.__setattr__(self, "_rules_by_service", {service: tuple(rules) for service, rules in by_service.items()})
        object.__setattr__(self, "_rule_order", {rule.id: index for index, rule in enumerate(self.rules)})
        facts_read = {
            service: frozenset(name for rule in rules for name in rule.fact_names()) for service, rules in by_service.items()
        }
        object.__setattr__(self, "_facts_read", facts_read)
        # A call computes only what its service's rules read: the injury referral needs no BMI
        # (typical call of the risk factors service: 7 of 16 facts, facts 0.61 -> 0.53 ms).
        by_service_definitions = {service: self.fact_definitions.only(self.facts_read_by(service)) for service in self.services}
        object.__setattr__(self, "_definitions_by_service", by_service_definitions)

    def service(self, service_id: str) -> ServiceDefinition | None:
        return self.services.get(service_id)

    def rule(self, rule_id: str) -> Rule | None:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None

    def rules_for(self, service_id: str) -> tuple[Rule, ...]:
        """A service's rules in catalogue order."""
        return self._rules_by_service.get(service_id, ())

    def facts_read_by(self, service_id: str) -> frozenset[str]:
        """Every fact the service's rules read: their conditions, reasons and the reasons' ``when``."""
        return self._facts_read.get(service_id, frozenset())

    def fact_definitions_for(self, service_id: str) -> FactDefinitions:
        """The facts layer's definitions cut down to what the service's rules read; all of them for
        a service the catalogue does not have (evaluating that service is refused anyway)."""
        return self._definitions_by_service.get(service_id, self.fact_definitions)

    def rule_order(self, rule_id: str) -> int:
        """The rule's position in the catalogue (findings of equal urgency keep this order)."""
        return self._rule_order[rule_id]

    @property
    def suppress_days(self) -> dict[str, int]:
        """Rule id -> days a suppressing override lasts (clinical-rules.md section 3)."""
        return {rule.id: rule.suppress_days for rule in self.rules}

    @property
    def suppressing_reasons(self) -> frozenset[str]:
        """Override reason codes that suppress a rule (interface.md decision 7)."""
        return frozenset(reason.code for reason in self.override_reasons if reason.suppresses)


# --- loading -----------------------------------------------------------------------------


# The values each kind of fact carries (the fact-name contract of the team brief), which card
# templates may name as placeholders. tests/engine checks computed facts carry no others.
VALUES_BY_KIND: Mapping[str, tuple[str, ...]] = {
    "age_at_least": ("age",),
    "condition": (),
    "recent_condition": ("window_days",),
    "condition_after": ("window_days",),
    "bmi": ("bmi", "source"),
    "excess_weight": ("bmi",),
    "weight_gain": ("gain_percent", "newest_kg", "lowest_kg"),
    "family_history": (),
}


def load_catalogue(rules_dir: Path) -> Catalogue:
    """The catalogue in ``rules_dir``, with the facts layer's definitions from the same folder."""
    rules_dir = Path(rules_dir)
    if not rules_dir.is_dir():
        raise CatalogueError(str(rules_dir), "rules directory not found; set CDS_RULES_DIR to the folder holding catalogue.yaml")
    definitions = load_fact_definitions(rules_dir)
    return build_catalogue(rules_dir, fact_definitions=definitions, facts=fact_specs(definitions))


def fact_specs(definitions: FactDefinitions) -> dict[str, FactSpec]:
    """What the rules may say about each defined fact: its description, values and parameters."""
    specs: dict[str, FactSpec] = {}
    for name, definition in definitions.facts.items():
        if definition.kind not in VALUES_BY_KIND:
            raise CatalogueError(FACTS_FILE, f"fact kind '{definition.kind}' is unknown to the rule engine", entry=f"fact '{name}'", field="kind")
        specs[name] = FactSpec(
            name=name,
            description=definition.description,
            values=VALUES_BY_KIND[definition.kind],
            parameters={key: _number(value) for key, value in definitions.parameters(name).items()},
        )
    return specs


def _number(value: Any) -> int | float:
    """A parameter as a plain number (facts.yaml keeps thresholds as Decimal)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"parameter value {value!r} is not a number")
    if isinstance(value, int):
        return value
    number = Decimal(value)
    return int(number) if number == number.to_integral_value() else float(number)


def build_catalogue(
    rules_dir: Path, *, fact_definitions: FactDefinitions, facts: Mapping[str, FactSpec]
) -> Catalogue:
    """Load and check services, ``catalogue.yaml`` and every rule file against ``facts``."""
    rules_dir = Path(rules_dir)
    if not rules_dir.is_dir():
        raise CatalogueError(str(rules_dir), "rules directory not found; set CDS_RULES_DIR to the folder holding catalogue.yaml")
    services = _load_services(rules_dir / "services.yaml")
    catalogue_path = rules_dir / "catalogue.yaml"
    header = validate_catalogue_file(_CatalogueFile, read_catalogue_yaml(catalogue_path), file=catalogue_path)
    article = _Article(_load_article(rules_dir / header.article, catalogue_path=catalogue_path), header.refers_back)
    _check_refers_back(article, catalogue_path=catalogue_path)
    rules = _load_rules(rules_dir, header.rules, catalogue_path=catalogue_path, services=services, facts=facts, article=article)
    for service_id in services:
        if not any(rule.service == service_id for rule in rules):
            raise CatalogueError(str(rules_dir / "services.yaml"), f"service '{service_id}' has no rules in {catalogue_path.name}")
    codes = [reason.code for reason in header.override_reasons.reasons]
    if len(set(codes)) != len(codes):
        raise CatalogueError(str(catalogue_path), "an override reason code is listed twice", field="override_reasons.reasons")
    return Catalogue(
        version=header.version,
        services=services,
        rules=rules,
        topic_system=header.topic_system,
        source_label=header.source_label,
        override_reason_system=header.override_reasons.system,
        override_reasons=tuple(header.override_reasons.reasons),
        facts=dict(facts),
        fact_definitions=fact_definitions,
        article=article.text,
    )


def _load_services(path: Path) -> dict[str, ServiceDefinition]:
    raw = read_catalogue_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), list):
        raise CatalogueError(str(path), "expected a mapping with a 'services' list")
    services: dict[str, ServiceDefinition] = {}
    for index, entry in enumerate(raw["services"]):
        try:
            service = ServiceDefinition.model_validate(entry)
        except ValidationError as exc:
            raise from_validation_error(exc, file=path, rule=f"services[{index}]") from None
        if service.id in services:
            raise CatalogueError(str(path), f"service id '{service.id}' is defined twice", rule=f"services[{index}]", field="id")
        services[service.id] = service
    return services


_SENTENCE_ENDS = (".", "!", "?")
_BEFORE_A_SENTENCE = (".", "!", "?", ":", "\u2022")  # and the start of a line


def _whole_sentence_of(citation: str, article: str) -> bool:
    """True when ``citation`` ends a sentence and, somewhere in ``article``, starts one: after a
    sentence's end, a colon, a bullet or a line break."""
    if not citation.rstrip().endswith(_SENTENCE_ENDS):
        return False
    at = article.find(citation)
    while at >= 0:
        before = article[:at].rstrip(" \t")
        if not before or before.endswith("\n") or before.endswith(_BEFORE_A_SENTENCE):
            return True
        at = article.find(citation, at + 1)
    return False


@dataclass(frozen=True, slots=True)
class _Article:
    """The article citations are copied from, and which of its sentences speak of what another names
    (``refers_back`` in catalogue.yaml)."""

    text: str
    refers_back: Mapping[str, str]


def _check_refers_back(article: _Article, *, catalogue_path: Path) -> None:
    for sentence, named_in in article.refers_back.items():
        for text in (sentence, named_in):
            if not _whole_sentence_of(text, article.text):
                raise CatalogueError(
                    str(catalogue_path), f"not a whole sentence of the article: {text[:60]!r}", field="refers_back"
                )


def _load_article(path: Path, *, catalogue_path: Path) -> str:
    """The article text; leading ``#`` lines are provenance, not article."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueError(str(catalogue_path), f"article file {path} not found", field="article") from None
    lines = text.split("\n")
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    article = "\n".join(lines)
    if not article.strip():
        raise CatalogueError(str(path), "the article is empty")
    return article


def _load_rules(
    rules_dir: Path,
    listed: list[str],
    *,
    catalogue_path: Path,
    services: Mapping[str, ServiceDefinition],
    facts: Mapping[str, FactSpec],
    article: _Article,
) -> tuple[Rule, ...]:
    paths: list[Path] = []
    for index, name in enumerate(listed):
        path = (rules_dir / name).resolve()
        if not path.is_file():
            raise CatalogueError(str(catalogue_path), f"rule file {name} not found", field=f"rules[{index}]")
        if path in paths:
            raise CatalogueError(str(catalogue_path), f"rule file {name} is listed twice", field=f"rules[{index}]")
        paths.append(path)
    for folder in {path.parent for path in paths}:
        for stray in sorted(folder.glob("*.y*ml")):
            if stray.resolve() not in paths:
                raise CatalogueError(
                    str(stray), f"rule file is not listed under 'rules' in {catalogue_path.name}; list it or remove it"
                )
    rules: list[Rule] = []
    for path in paths:
        rule = _load_rule(path, services=services, facts=facts, article=article)
        if any(existing.id == rule.id for existing in rules):
            raise CatalogueError(str(path), "rule id is used by another rule file", rule=rule.id, field="id")
        rules.append(rule)
    return tuple(rules)


def _load_rule(path: Path, *, services: Mapping[str, ServiceDefinition], facts: Mapping[str, FactSpec], article: _Article) -> Rule:
    raw = read_catalogue_yaml(path)
    rule_name = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else path.stem
    spec = validate_catalogue_file(RuleFile, raw, file=path, rule=rule_name)
    file = str(path)

    def fail(field_name: str, message: str) -> CatalogueError:
        return CatalogueError(file, message, rule=spec.id, field=field_name)

    if spec.id != path.stem:
        raise fail("id", f"must match the file name '{path.stem}' (one rule per file, named after its id)")
    if spec.service not in services:
        raise fail("service", f"unknown service '{spec.service}'; services.yaml defines {', '.join(services)}")
    known = frozenset(facts)
    try:
        condition = parse_condition(spec.condition, known_facts=known)
        whens = [
            parse_condition(reason.when, field=f"card.reasons[{index}].when", known_facts=known)
            if reason.when is not None
            else None
            for index, reason in enumerate(spec.card.reasons)
        ]
    except ConditionError as exc:
        raise fail(exc.field, exc.message) from None

    used: list[str] = list(condition.fact_names())
    for index, reason in enumerate(spec.card.reasons):
        if reason.fact not in facts:
            raise fail(f"card.reasons[{index}].fact", f"unknown fact '{reason.fact}'; known facts: {', '.join(sorted(facts))}")
        used.append(reason.fact)
        when = whens[index]
        if when is not None:
            used.extend(when.fact_names())
            if reason.fact not in when.fact_names():
                raise fail(f"card.reasons[{index}].when", f"must involve the reason's own fact '{reason.fact}'")
    thresholds = _thresholds(dict.fromkeys(used), facts, fail=fail)

    def template(text: str, field_name: str, allowed: set[str]) -> Template:
        try:
            return Template.parse(text, allowed=frozenset(allowed))
        except TemplateError as exc:
            raise fail(field_name, str(exc)) from None

    parameters = set(thresholds)
    reasons = tuple(
        Reason(
            fact=reason.fact,
            when=whens[index] or Rule.default_when(reason.fact),
            summary=(
                template(reason.summary, f"card.reasons[{index}].summary", parameters | set(facts[reason.fact].values) | {EVIDENCE_PLACEHOLDER})
                if reason.summary
                else None
            ),
            text=template(reason.text, f"card.reasons[{index}].text", parameters | set(facts[reason.fact].values) | {EVIDENCE_PLACEHOLDER}),
        )
        for index, reason in enumerate(spec.card.reasons)
    )
    summary = template(spec.card.summary, "card.summary", parameters | {REASONS_PLACEHOLDER})
    _check_summary_fits(summary, reasons, fail=fail)
    advice = template(spec.card.advice, "card.advice", parameters)
    _check_citations(spec.citations, article, fail=fail)
    suggestions = tuple(
        SuggestionSpec(
            label=item.label,
            recommended=item.recommended,
            intent=item.request.intent,
            code=RequestCode(item.request.code.system, item.request.code.code, item.request.code.display) if item.request.code else None,
            text=item.request.text,
        )
        for item in spec.suggestions
    )
    return Rule(
        id=spec.id,
        version=spec.version,
        title=spec.title,
        service=spec.service,
        indicator=spec.indicator,
        suppress_days=spec.suppress_days,
        checks=spec.checks,
        condition=condition,
        summary=summary,
        reasons=reasons,
        advice=advice,
        citations=tuple(spec.citations),
        selection_behavior=spec.selection_behavior,
        suggestions=suggestions,
        thresholds=thresholds,
        file=file,
    )


def _check_summary_fits(summary: Template, reasons: Sequence[Reason], *, fail: Any) -> None:
    """A summary that is over the CDS Hooks limit with its placeholders empty would be cut on every card."""
    if REASONS_PLACEHOLDER in summary.placeholders and not any(reason.summary for reason in reasons):
        raise fail("card.summary", "uses {reasons} but no reason has a 'summary' phrase")
    shortest = summary.fixed_length + (
        min(reason.summary.fixed_length for reason in reasons if reason.summary) if REASONS_PLACEHOLDER in summary.placeholders else 0
    )
    if shortest > SUMMARY_LIMIT:  # every card would be cut, its claim with it
        raise fail(
            "card.summary",
            f"is at least {shortest} characters even with its placeholders (and the shortest reason phrase) empty; "
            f"a card summary must stay within {SUMMARY_LIMIT} (CDS Hooks)",
        )


def _check_citations(citations: Sequence[str], article: _Article, *, fail: Any) -> None:
    """Each citation a whole sentence of the article, word for word, listed once, with the sentence
    it speaks of (``refers_back``) cited too."""
    for index, citation in enumerate(citations):
        if citation not in article.text:
            raise fail(f"citations[{index}]", f"not found word for word in the article: {citation[:60]!r}")
        if not _whole_sentence_of(citation, article.text):
            raise fail(f"citations[{index}]", f"not a whole sentence of the article (a card quotes it as one): {citation[:60]!r}")
        named_in = article.refers_back.get(citation)
        if named_in is not None and named_in not in citations:
            raise fail(
                f"citations[{index}]",
                f"speaks of what another sentence of the article names, which is not cited: {named_in[:60]!r}",
            )
    if len(set(citations)) != len(citations):
        raise fail("citations", "a citation is listed twice")


def _thresholds(names: Mapping[str, None], facts: Mapping[str, FactSpec], *, fail: Any) -> dict[str, int | float]:
    """The parameters of the facts a rule uses; one name must mean one value."""
    merged: dict[str, int | float] = {}
    for name in names:
        for parameter, value in facts[name].parameters.items():
            if parameter in merged and merged[parameter] != value:
                raise fail("condition", f"facts disagree on parameter '{parameter}' ({merged[parameter]} vs {value})")
            merged[parameter] = value
    return merged
