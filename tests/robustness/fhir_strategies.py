"""Hypothesis strategies for FHIR R4 JSON as EHRs really send it, and as they should not.

Each resource strategy draws a plausible resource (codes from ``rules/valuesets.yaml`` and the
Observation codes and units of ``rules/facts.yaml``, so the facts layer's real branches run),
then maybe breaks it: wrong JSON types anywhere, missing fields, partial or impossible dates,
odd units, unknown statuses. The facts layer must read all of it without raising.
"""

from __future__ import annotations

import copy
import re
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

__all__ = [
    "json_values",
    "patients",
    "plausible_patients",
    "plausible_conditions",
    "plausible_observations",
    "plausible_family_member_histories",
    "conditions",
    "observations",
    "family_member_histories",
    "resources",
    "resource_lists",
    "relevant_codes",
]

RULES = Path(__file__).resolve().parent.parent.parent / "rules"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

def _text(*, max_size: int) -> st.SearchStrategy[str]:
    """Text a JSON body can carry (orjson refuses lone surrogates, so no request holds one)."""
    return st.text(alphabet=st.characters(codec="utf-8"), max_size=max_size)


# Any JSON value, small: what a broken field may hold instead of the right type.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False) | _text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@cache
def relevant_codes() -> dict[str, tuple[str, ...]]:
    """System URI -> codes the value sets name (stems and range ends made concrete)."""
    data = yaml.safe_load((RULES / "valuesets.yaml").read_text(encoding="utf-8"))
    uris = {name: entry["uri"] for name, entry in data["systems"].items()}
    codes: dict[str, set[str]] = {}
    for concept in data["concepts"].values():
        for system, patterns in (concept.get("codes") or {}).items():
            for pattern in patterns:
                for end in re.split(r"[–-](?=[A-Z])", str(pattern)):
                    stem = end.rstrip("*")
                    codes.setdefault(uris[system], set()).update({stem, stem + "1", stem + "9XXA"} if end.endswith("*") else {stem})
    return {system: tuple(sorted(found)) for system, found in codes.items()}


# Display and text as people write them (FHIR strings: no control characters, not blank).
_words = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=8).map(lambda w: f"{w} pain")


def _codings() -> st.SearchStrategy[dict[str, Any]]:
    known = relevant_codes()
    relevant = st.sampled_from(sorted(known)).flatmap(lambda system: st.tuples(st.just(system), st.sampled_from(known[system])))
    icd_variants = st.sampled_from(known.get(ICD10, ("M17.11",))).map(lambda code: (ICD10, code.replace(".", "")))  # dot dropped
    other = st.tuples(st.sampled_from([SNOMED, ICD10, LOINC, "urn:oid:2.16.840.1.113883.6.90"]), st.text(alphabet="ABMSZ0123456789.", min_size=1, max_size=8))
    return st.builds(
        lambda pair, display: {"system": pair[0], "code": pair[1], **({"display": display} if display is not None else {})},
        st.one_of(relevant, relevant, icd_variants, other),
        st.none() | _words,
    )


def _codeable(codings: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"coding": st.lists(codings, min_size=0, max_size=3)}, optional={"text": _words})


def _status_concept(system: str, codes: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    coding = st.fixed_dictionaries({"code": st.sampled_from(codes) | _text(max_size=8)}, optional={"system": st.just(system)})
    return st.fixed_dictionaries({"coding": st.lists(coding, max_size=2)})


# Dates as EHRs write them: full, partial (year, year-month), with times and offsets, and wrong.
_recent = st.dates(min_value=date(2000, 1, 1), max_value=date(2031, 12, 31))
_plausible_dates = st.one_of(
    _recent.map(lambda d: d.isoformat()),
    _recent.map(lambda d: d.isoformat()),
    _recent.map(lambda d: f"{d.isoformat()}T10:30:00Z"),
    _recent.map(lambda d: f"{d.year:04d}-{d.month:02d}"),
    _recent.map(lambda d: str(d.year)),
)
_dates = st.one_of(
    _plausible_dates,
    st.dates().map(lambda d: d.isoformat()),
    st.integers(1900, 2100).map(str),
    st.tuples(st.integers(1900, 2100), st.integers(1, 12)).map(lambda ym: f"{ym[0]:04d}-{ym[1]:02d}"),
    st.datetimes().map(lambda dt: dt.isoformat(timespec="seconds")),
    st.tuples(st.datetimes(), st.sampled_from(["Z", "+05:30", "-08:00"])).map(lambda p: p[0].isoformat(timespec="seconds") + p[1]),
    st.sampled_from(["2024-02-30", "2023-13-01", "20240101", "yesterday", "", "0000-00-00", "2024-01-01T25:00:00Z", "9999-12-31"]),
)


def _reference() -> st.SearchStrategy[dict[str, Any]]:
    """Mostly the patient ``p1``; sometimes another patient, a urn or a bare id."""
    target = st.sampled_from(
        ["Patient/p1"] * 6 + ["Patient/p2", "urn:uuid:6d1a3c1e-0000-4000-8000-000000000001", "p1"]
    )
    return st.fixed_dictionaries({"reference": target})


_ids = st.one_of(st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.text(alphabet="abcdef0123456789-.", min_size=1, max_size=12))


# Units per measured quantity, as the service's Observation codes expect them, and odd ones.
_UNITS = {
    "39156-5": (["kg/m2"], (12.0, 60.0)),
    "29463-7": (["kg", "g", "[lb_av]"], (30.0, 180.0)),
    "3141-9": (["kg", "[lb_av]"], (30.0, 180.0)),
    "8302-2": (["cm", "m", "[in_i]"], (140.0, 205.0)),
}
_ODD_UNITS = ["[stone]", "lb", "mg", "", "kg/m^2", "%", "KG", "[ft_i]"]


def _quantity(code: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """A valueQuantity: a fitting value and UCUM unit for ``code`` usually, odd ones sometimes."""
    units, (low, high) = _UNITS.get(code or "", (["kg", "cm", "kg/m2"], (1.0, 200.0)))
    plausible = st.builds(
        lambda value, unit: {"value": round(value, 1), "unit": unit, "system": UCUM, "code": unit},
        st.floats(min_value=low, max_value=high),
        st.sampled_from(units),
    )
    odd = st.fixed_dictionaries(
        {"value": st.one_of(st.floats(min_value=-10, max_value=1000, allow_nan=False), st.integers(-5, 500), st.sampled_from([0, 0.0, 1e-9, 1e300, -0.0]))},
        optional={
            "unit": st.sampled_from(units + _ODD_UNITS),
            "code": st.sampled_from(units + _ODD_UNITS),
            "system": st.sampled_from([UCUM, "http://example.org/units", ""]),
            "comparator": st.sampled_from(["<", ">=", "ad"]),
        },
    )
    return st.one_of(plausible, plausible, plausible, odd)


def _broken(resource: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A resource with one field (at any depth) removed, or set to an arbitrary JSON value."""

    def mutate(value: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
        broken = copy.deepcopy(value)
        node: Any = broken
        while True:
            keys = [key for key in node if key != "resourceType"] if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                return broken
            key = data.draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and data.draw(st.booleans()):
                node = child  # go deeper
                continue
            if isinstance(node, dict) and data.draw(st.booleans()):
                del node[key]
            else:
                node[key] = data.draw(st.one_of(json_values, _dates))  # anything, or a date-like string
            return broken

    return st.builds(mutate, resource, st.data())


def _with_breakage(plausible: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(plausible, plausible, _broken(plausible), _broken(_broken(plausible)))


def plausible_patients() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"resourceType": st.just("Patient"), "id": st.sampled_from(["p1", "p1", "p2"])},
        optional={
            "birthDate": st.one_of(
                st.dates(min_value=date(1920, 1, 1), max_value=date(2024, 12, 31)).map(lambda d: d.isoformat()),
                st.integers(1920, 2024).map(str),
                st.tuples(st.integers(1920, 2024), st.integers(1, 12)).map(lambda ym: f"{ym[0]:04d}-{ym[1]:02d}"),
            ),
            "_birthDate": st.just({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]}),
            "gender": st.sampled_from(["female", "male", "other", "unknown"]),
        },
    ).flatmap(lambda patient: st.one_of(
        st.just(patient),
        st.booleans().map(lambda dead: {**patient, "deceasedBoolean": dead}),
        _plausible_dates.map(lambda when: {**patient, "deceasedDateTime": when}),
    ))


def patients() -> st.SearchStrategy[dict[str, Any]]:
    return _with_breakage(plausible_patients())


def plausible_conditions() -> st.SearchStrategy[dict[str, Any]]:
    onset = st.one_of(
        st.fixed_dictionaries({"onsetDateTime": _plausible_dates}),
        st.fixed_dictionaries({"onsetDateTime": _plausible_dates}),
        st.fixed_dictionaries({"onsetPeriod": st.fixed_dictionaries({}, optional={"start": _plausible_dates, "end": _plausible_dates})}),
        st.fixed_dictionaries({"onsetAge": st.fixed_dictionaries({"value": st.integers(0, 100), "unit": st.just("a"), "system": st.just(UCUM), "code": st.sampled_from(["a", "mo", "wk"])})}),
        st.fixed_dictionaries({"onsetString": _words}),
        st.just({}),
    )
    abatement = st.one_of(
        st.just({}),
        st.just({}),
        st.fixed_dictionaries({"abatementDateTime": _plausible_dates}),
        st.fixed_dictionaries({"abatementPeriod": st.fixed_dictionaries({}, optional={"start": _plausible_dates, "end": _plausible_dates})}),
        st.fixed_dictionaries({"abatementAge": st.fixed_dictionaries({"value": st.integers(0, 100), "unit": st.just("a"), "system": st.just(UCUM), "code": st.just("a")})}),
        st.fixed_dictionaries({"abatementString": _words}),
    )
    base = st.fixed_dictionaries(
        {"resourceType": st.just("Condition"), "id": _ids, "code": _codeable(_codings()), "subject": _reference()},
        optional={
            "clinicalStatus": _status_concept(CLINICAL, ["active", "active", "recurrence", "relapse", "inactive", "remission", "resolved"]),
            "verificationStatus": _status_concept(VERIFICATION, ["confirmed", "provisional", "differential", "unconfirmed", "refuted", "entered-in-error"]),
            "recordedDate": _plausible_dates,
            "category": st.lists(_codeable(_codings()), max_size=2),
        },
    )
    return st.builds(lambda b, o, a: {**b, **o, **a}, base, onset, abatement)


def conditions() -> st.SearchStrategy[dict[str, Any]]:
    return _with_breakage(plausible_conditions())


_MEASURED = sorted(_UNITS)
_OTHER_LOINC = ["3142-7", "8350-1", "8351-9", "3137-7", "8306-3", "8308-9", "72514-3"]


def plausible_observations() -> st.SearchStrategy[dict[str, Any]]:
    def build(code: str, rest: dict[str, Any], effective: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
        return {"resourceType": "Observation", "code": {"coding": [{"system": LOINC, "code": code}]}, **rest, **effective, **value}

    effective = st.one_of(
        st.fixed_dictionaries({"effectiveDateTime": _plausible_dates}),
        st.fixed_dictionaries({"effectiveDateTime": _plausible_dates}),
        st.fixed_dictionaries({"effectivePeriod": st.fixed_dictionaries({}, optional={"start": _plausible_dates, "end": _plausible_dates})}),
        st.fixed_dictionaries({"effectiveInstant": _recent.map(lambda d: f"{d.isoformat()}T08:00:00Z")}),
        st.just({}),
    )
    rest = st.fixed_dictionaries(
        {"id": _ids, "subject": _reference(), "status": st.sampled_from(["final", "final", "amended", "corrected", "preliminary", "cancelled", "entered-in-error", "unknown"])},
        optional={"issued": _recent.map(lambda d: f"{d.isoformat()}T09:00:00Z")},
    )

    def value_for(code: str) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of(
            st.fixed_dictionaries({"valueQuantity": _quantity(code)}),
            st.fixed_dictionaries({"valueQuantity": _quantity(code)}),
            st.fixed_dictionaries({"valueString": _words}),
            st.fixed_dictionaries({"dataAbsentReason": st.just({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]})}),
            st.fixed_dictionaries({"component": st.lists(st.fixed_dictionaries({"code": _codeable(_codings()), "valueQuantity": _quantity(code)}), max_size=2)}),
        )

    code = st.one_of(st.sampled_from(_MEASURED), st.sampled_from(_MEASURED), st.sampled_from(_OTHER_LOINC))
    return code.flatmap(lambda c: st.builds(build, st.just(c), rest, effective, value_for(c)))


def observations() -> st.SearchStrategy[dict[str, Any]]:
    return _with_breakage(plausible_observations())


def plausible_family_member_histories() -> st.SearchStrategy[dict[str, Any]]:
    relation = _codeable(
        st.fixed_dictionaries(
            {"system": st.just("http://terminology.hl7.org/CodeSystem/v3-RoleCode"), "code": st.sampled_from(["FTH", "MTH", "SIS", "BRO", "GRMTH", "NMTH", "XYZ"])}
        )
    )
    condition = st.fixed_dictionaries(
        {"code": _codeable(_codings())},
        optional={"onsetAge": st.fixed_dictionaries({"value": st.integers(0, 110)}), "contributedToDeath": st.booleans()},
    )
    return st.fixed_dictionaries(
        {
            "resourceType": st.just("FamilyMemberHistory"),
            "id": _ids,
            "status": st.sampled_from(["completed", "completed", "partial", "health-unknown", "entered-in-error"]),
            "patient": _reference(),
            "relationship": relation,
        },
        optional={"condition": st.lists(condition, max_size=3), "date": _plausible_dates},
    )


def family_member_histories() -> st.SearchStrategy[dict[str, Any]]:
    return _with_breakage(plausible_family_member_histories())


def resources() -> st.SearchStrategy[dict[str, Any]]:
    """One resource of the four kinds the facts read (rarely another type or not a resource)."""
    other = st.fixed_dictionaries({"resourceType": st.sampled_from(["Encounter", "OperationOutcome", "Bundle", "", "Condition "])}, optional={"id": _ids})
    return st.one_of(patients(), conditions(), conditions(), observations(), observations(), family_member_histories(), other)


def resource_lists(*, max_size: int = 12) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(resources(), max_size=max_size)
