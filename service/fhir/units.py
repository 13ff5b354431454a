"""UCUM units of the measurements the facts read, and their conversion to kg, m and kg/m2.

Only exact UCUM codes are known (clinical-rules.md section 1: "an Observation in an unknown
unit is ignored, not guessed"): ``lbs`` or ``kilograms`` in free text are not units here.
These are physical constants, not clinical content; which units each Observation accepts is
data in ``rules/facts.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal
from functools import cache

__all__ = ["UCUM_SYSTEM", "Unit", "known_unit", "known_units", "quantity_unit_code", "rounded", "shown"]

UCUM_SYSTEM = "http://unitsofmeasure.org"


@dataclass(frozen=True, slots=True)
class Unit:
    """A UCUM unit: what it measures and the factor to the canonical unit (kg, m, kg/m2)."""

    code: str
    quantity: str  # "mass", "length", "body_mass_index"
    factor: Decimal
    shown_as: str = ""  # how a clinician writes it, when not as its code: "lb", not "[lb_av]"

    @property
    def label(self) -> str:
        """For a card, when the resource gives no unit text of its own."""
        return self.shown_as or self.code

    def to_canonical(self, value: Decimal) -> Decimal:
        return value * self.factor


_UNITS: dict[str, Unit] = {
    unit.code: unit
    for unit in (
        Unit("kg", "mass", Decimal(1)),
        Unit("g", "mass", Decimal("0.001")),
        Unit("[lb_av]", "mass", Decimal("0.45359237"), "lb"),  # international avoirdupois pound
        Unit("cm", "length", Decimal("0.01")),
        Unit("m", "length", Decimal(1)),
        Unit("[in_i]", "length", Decimal("0.0254"), "in"),  # international inch
        Unit("kg/m2", "body_mass_index", Decimal(1)),
    )
}


def known_units() -> list[str]:
    """Every UCUM code the facts can convert, for messages."""
    return list(_UNITS)


def known_unit(code: str) -> Unit | None:
    """The unit with this exact UCUM code, or None."""
    return _UNITS.get(code)


def quantity_unit_code(quantity: dict[str, object]) -> str | None:
    """The UCUM code a FHIR Quantity is in, or None when it has none.

    ``code`` counts when ``system`` is UCUM or absent; a Quantity with only the human-readable
    ``unit`` counts when that text is itself a UCUM code (``"kg"``), never when it is prose
    (``"lbs"``). A code from another system is not a UCUM unit.
    """
    system = quantity.get("system")
    code = quantity.get("code")
    if isinstance(code, str) and (code := code.strip()):
        if system is None or system == UCUM_SYSTEM:
            return code
        return None
    unit = quantity.get("unit")
    if isinstance(unit, str) and unit.strip() in _UNITS:
        return unit.strip()
    return None


_PRECISION = 28
_CONTEXT = Context(prec=_PRECISION)  # built once: building a Context cost 0.5 us per rounding


def rounded(value: Decimal, places: int = 1) -> Decimal:
    """``value`` rounded half up (27.95 -> 28.0), as a clinician rounds a reading."""
    return _quantized(value, places, ROUND_HALF_UP)


def shown(value: Decimal) -> Decimal:
    """``value`` as a card shows it: ``rounded`` to one place, except that it is never rounded up
    to a whole number it does not reach (24.96 -> 24.96, not 25.0). Thresholds are whole numbers
    (BMI 25), and a card must not read "BMI 25.0, below the overweight threshold of 25"."""
    result = rounded(value)
    if result > value and result == result.to_integral_value():
        return _quantized(value, 2, ROUND_DOWN)
    return result


def _quantized(value: Decimal, places: int, rounding: str) -> Decimal:
    # Enough precision for any magnitude: the default 28 digits fail on absurd values (1e308 kg).
    precision = value.adjusted() + places + 2
    context = _CONTEXT if precision <= _PRECISION else Context(prec=precision)
    return value.quantize(_quantum(places), rounding=rounding, context=context)


@cache
def _quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)  # 0.1 for one place
