"""CDS Hooks 2.0 prefetch: rendering templates, and sorting what a client sent into present and missing.

Templates are relative FHIR reads and searches with ``{{...}}`` tokens (digest section 3):
``{{context.<field>}}`` for a root-level primitive context field, and the 2.0 user tokens
(``{{userPractitionerId}}`` ...) taken from ``context.userId`` (a ``Type/id`` string).
Token values go into URLs sent to the EHR's FHIR server with its bearer token, so they must
be FHIR ids (or ``Type/id`` for ``context.userId``): ``123&_count=100000`` or ``../x`` is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.cdshooks.bundles import is_bundle, next_link
from service.cdshooks.errors import HookRequestError

__all__ = [
    "USER_TOKENS",
    "PrefetchReport",
    "TemplateError",
    "classify_prefetch",
    "render_template",
    "template_tokens",
]

# CDS Hooks 2.0 user tokens -> the FHIR type context.userId must have for the token to exist.
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}

_TOKEN = re.compile(r"\{\{(.*?)\}\}")
_CONTEXT_TOKEN = re.compile(r"^context\.([A-Za-z][A-Za-z0-9_]*)$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})$")


class TemplateError(ValueError):
    """A template this request cannot fill (a context field it does not carry); the key is unobtainable."""


def template_tokens(template: str) -> list[str]:
    """The tokens of a template, stripped; raises :class:`TemplateError` for one 2.0 does not define.

    Usable by the catalogue to refuse a broken template at load time.
    """
    tokens = [match.strip() for match in _TOKEN.findall(template)]
    for token in tokens:
        if token not in USER_TOKENS and not _CONTEXT_TOKEN.match(token):
            raise TemplateError(
                f"prefetch token '{{{{{token}}}}}' is not a CDS Hooks 2.0 token "
                "(context.<root field> or userPractitionerId, userPractitionerRoleId, userPatientId, userRelatedPersonId)"
            )
    if "{{" in _TOKEN.sub("", template) or "}}" in _TOKEN.sub("", template):
        raise TemplateError(f"prefetch template {template!r} has an unbalanced '{{{{' or '}}}}'")
    return tokens


def render_template(template: str, context: Mapping[str, Any]) -> str:
    """The template with every token replaced from ``context``.

    Raises :class:`TemplateError` when the context lacks what a token needs, and
    :class:`HookRequestError` (400) when a context value is not a FHIR id.
    """
    template_tokens(template)
    return _TOKEN.sub(lambda match: _token_value(match.group(1).strip(), context), template)


def _token_value(token: str, context: Mapping[str, Any]) -> str:
    if token in USER_TOKENS:
        wanted = USER_TOKENS[token]
        user = context.get("userId")
        if not isinstance(user, str):
            raise TemplateError(f"token {{{{{token}}}}} needs context.userId, which the request does not carry")
        match = _REFERENCE.match(user)
        if match is None:
            raise HookRequestError("context.userId must be a FHIR reference 'Type/id', e.g. 'Practitioner/123'")
        if match.group(1) != wanted:
            raise TemplateError(f"token {{{{{token}}}}} needs a {wanted} user, and context.userId is a {match.group(1)}")
        return match.group(2)
    name = token.removeprefix("context.")
    value = context.get(name)
    if value is None:
        raise TemplateError(f"token {{{{{token}}}}} needs context.{name}, which the request does not carry")
    if isinstance(value, dict | list):
        raise TemplateError(f"token {{{{{token}}}}} needs a primitive context.{name}, and the request sent an object or list")
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if _FHIR_ID.match(text) or (name == "userId" and _REFERENCE.match(text)):
        return text
    raise HookRequestError(
        f"context.{name} is not a valid FHIR id (1-64 letters, digits, '-' or '.'), so it cannot be used in a FHIR query"
    )


@dataclass(frozen=True, slots=True)
class PrefetchReport:
    """A request's prefetch sorted against a service's declared keys (interface.md decision 4)."""

    present: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """Declared keys the client filled: a resource, a Bundle, or ``None`` (no data; CDS Hooks 2.0)."""
    missing: dict[str, str] = field(default_factory=dict)
    """Declared keys without usable data -> 'is missing' or 'holds an OperationOutcome'."""
    paged: tuple[str, ...] = ()
    """Present keys whose Bundle has a ``next`` link (a paginated prefetch, allowed in 2.0)."""


def classify_prefetch(prefetch: Mapping[str, dict[str, Any] | None] | None, declared: Mapping[str, str]) -> PrefetchReport:
    """Absent or an OperationOutcome is missing; ``null`` is no data. The values are a validated
    ``HookRequest``'s: each a FHIR resource or null (``models.prefetch_value_problem``)."""
    prefetch = prefetch or {}
    present: dict[str, dict[str, Any] | None] = {}
    missing: dict[str, str] = {}
    paged: list[str] = []
    for key in declared:
        if key not in prefetch:
            missing[key] = "is missing"
            continue
        value = prefetch[key]
        if value is None:
            present[key] = None
        elif value["resourceType"] == "OperationOutcome":
            missing[key] = "holds an OperationOutcome"
        else:
            present[key] = value
            if is_bundle(value) and next_link(value) is not None:
                paged.append(key)
    return PrefetchReport(present=present, missing=missing, paged=tuple(paged))
