"""Card text templates: placeholders filled from the values, or by ``missing``; plain text as it is."""

from __future__ import annotations

from service.engine.templates import Template


def _missing(name: str) -> str:
    return f"<no {name}>"


def test_placeholders_are_filled_in_place_and_missing_ones_asked_for() -> None:
    template = Template.parse("BMI {bmi} ({overweight_bmi} or more), age {age}.", allowed=frozenset({"bmi", "overweight_bmi", "age"}))
    assert template.render({"bmi": "27.9", "age": "62"}, missing=_missing) == "BMI 27.9 (<no overweight_bmi> or more), age 62."
    assert Template.parse("{age}", allowed=frozenset({"age"})).render({"age": "62"}, missing=_missing) == "62"


def test_a_text_without_placeholders_renders_as_it_is() -> None:
    text = "A past  back, knee, leg or hip injury.\n Not modifiable. "
    assert Template.parse(text, allowed=frozenset({"age"})).render({"age": "62"}, missing=_missing) == text
    assert Template.parse("", allowed=frozenset()).render({}, missing=_missing) == ""
