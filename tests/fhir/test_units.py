"""UCUM units: exact codes only; prose units are not guessed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from service.fhir.units import known_unit, quantity_unit_code, rounded, shown

UCUM = "http://unitsofmeasure.org"


@pytest.mark.parametrize(
    ("code", "value", "canonical"),
    [
        ("kg", "80", Decimal(80)),
        ("g", "80000", Decimal(80)),
        ("[lb_av]", "185", Decimal("83.91458845")),
        ("cm", "175", Decimal("1.75")),
        ("m", "1.75", Decimal("1.75")),
        ("[in_i]", "66.9", Decimal("1.69926")),
        ("kg/m2", "27.9", Decimal("27.9")),
    ],
)
def test_conversion_to_canonical_units(code: str, value: str, canonical: Decimal) -> None:
    unit = known_unit(code)
    assert unit is not None
    assert unit.to_canonical(Decimal(value)) == canonical


@pytest.mark.parametrize("code", ["lbs", "lb", "in", "KG", "kg/m^2", "[lb_us]", ""])
def test_unknown_units(code: str) -> None:
    assert known_unit(code) is None


@pytest.mark.parametrize(
    ("quantity", "code"),
    [
        ({"value": 1, "system": UCUM, "code": "[lb_av]", "unit": "lbs"}, "[lb_av]"),
        ({"value": 1, "code": "kg"}, "kg"),
        ({"value": 1, "unit": "kg"}, "kg"),  # unit text that is itself a UCUM code
        ({"value": 1, "unit": "lbs"}, None),  # prose: not guessed
        ({"value": 1, "system": "http://example.org/units", "code": "kg"}, None),
        ({"value": 1}, None),
        ({"value": 1, "code": 5}, None),
    ],
)
def test_quantity_unit_code(quantity: dict[str, object], code: str | None) -> None:
    assert quantity_unit_code(quantity) == code


def test_rounding_is_half_up_and_survives_absurd_values() -> None:
    assert rounded(Decimal("27.95")) == Decimal("28.0")
    assert rounded(Decimal("27.94")) == Decimal("27.9")
    assert rounded(Decimal("1e308")) == Decimal("1e308")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("27.94", "27.9"), ("27.96", "27.96"), ("27.86", "27.9"), ("25.04", "25.0"), ("24.96", "24.96"), ("24.996", "24.99"), ("1e308", "1e308")],
)
def test_shown_never_rounds_up_to_a_whole_number_it_does_not_reach(value: str, expected: str) -> None:
    """A card must not read "BMI 25.0, below the overweight threshold of 25" (found by a review)."""
    assert shown(Decimal(value)) == Decimal(expected)
