"""rules/valuesets.yaml and rules/facts.yaml: the real files load; broken ones are named exactly."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.catalogue_error import CatalogueError
from service.fhir import FactDefinitions, load_fact_definitions
from tests.conftest import REPO_ROOT

# The contract with the rule engine (team brief, "The fact names").
CONTRACT_FACTS = {
    "older_age",
    "injury_history",
    "excess_weight",
    "family_history",
    "recent_weight_gain",
    "bmi",
    "back_complaint",
    "knee_complaint",
    "knee_pain",
    "sciatica",
    "knee_arthritis",
    "acl_injury",
    "back_pain_after_trauma",
    "recent_back_injury",
    "recent_knee_injury",
    "knee_pain_after_knee_injury",
}


def test_defines_exactly_the_contract_facts(definitions: FactDefinitions) -> None:
    assert set(definitions.fact_names) == CONTRACT_FACTS


def test_parameters_are_the_spec_defaults(definitions: FactDefinitions) -> None:
    assert definitions.parameters("older_age") == {"older_age_years": 50}
    assert definitions.parameters("excess_weight") == {"overweight_bmi": Decimal(25)}
    assert definitions.parameters("bmi") == {"bmi_window_days": 730}
    assert definitions.parameters("recent_weight_gain") == {
        "weight_gain_percent": Decimal(5),
        "weight_gain_window_days": 365,
    }
    assert definitions.parameters("back_pain_after_trauma") == {"post_injury_window_days": 90}
    assert definitions.parameters("knee_pain_after_knee_injury") == {"post_injury_window_days": 90}
    assert definitions.parameters("recent_back_injury") == {"recent_injury_days": 90}
    assert definitions.parameters("recent_knee_injury") == {"recent_injury_days": 90}
    assert definitions.parameters("knee_pain") == {}


def test_only_keeps_the_facts_named_and_those_they_are_computed_from(definitions: FactDefinitions) -> None:
    weight = definitions.only(["knee_complaint", "excess_weight"])
    assert list(weight.facts) == ["bmi", "excess_weight", "knee_complaint"]  # file order, bmi for excess_weight
    assert set(weight.observations) == {"bmi", "body_weight", "body_height"}
    assert set(weight.accepted_units) == set(weight.observations)
    assert definitions.only(["recent_weight_gain"]).observation_concepts == {"body_weight": "body_weight"}
    injury = definitions.only(["acl_injury"])
    assert list(injury.facts) == ["acl_injury"] and not injury.observations
    # The selection shrinks with the facts: only the concepts acl_injury is coded as.
    assert injury.condition_concepts == frozenset(definitions.facts["acl_injury"].concepts)  # type: ignore[union-attr]
    assert not injury.member_concepts
    assert injury.matcher is definitions.matcher and injury.statuses is definitions.statuses
    with pytest.raises(KeyError, match="no_such_fact"):
        definitions.only(["acl_injury", "no_such_fact"])


def test_units_accepted_are_the_spec_units(definitions: FactDefinitions) -> None:
    assert definitions.observations["bmi"].units == ("kg/m2",)
    assert set(definitions.observations["body_weight"].units) == {"kg", "g", "[lb_av]"}
    assert set(definitions.observations["body_height"].units) == {"cm", "m", "[in_i]"}


def test_every_fact_and_concept_cites_its_source(definitions: FactDefinitions) -> None:
    assert all("clinical-rules.md" in d.source for d in definitions.facts.values())
    assert all("clinical-codes.md" in c.source for c in definitions.concepts.values())
    assert definitions.version and definitions.valuesets_version


# Every code of clinical-rules.md section 1b, exactly (system, concept): the YAML must hold
# these and nothing else. Stems and ranges are checked by their members in test_codes.py.
SECTION_1B = {
    "low_back_pain": {"SNOMED": {"279039007", "278860009", "161891005", "134407002"},
                      "ICD-10-CM": {"M54.5*", "M54.89", "M54.9", "M51.2*", "M51.3*"}},
    "sciatica": {"SNOMED": {"23056005"},
                 "ICD-10-CM": {"M54.3*", "M54.4*", "M54.16", "M54.17", "M51.16", "M51.17", "G57.0*"}},
    "knee_pain": {"SNOMED": {"30989003"}, "ICD-10-CM": {"M25.561", "M25.562", "M25.569"}},
    "knee_arthritis": {"SNOMED": {"239873007", "201777003"}, "ICD-10-CM": {"M17*"}},
    "knee_injury": {"SNOMED": {"125601008", "444470001", "444448004", "239720000", "30832001", "51037009", "428257007"},
                    "ICD-10-CM": {"S80.0*", "S82.0*", "S83*"}},
    "acl_injury": {"SNOMED": {"444470001"}, "ICD-10-CM": {"S83.51*"}},
    "back_injury": {"SNOMED": {"262521009", "15724005", "1734006"},
                    "ICD-10-CM": {"S22.0*", "S30.0*", "S32.0*", "S33*", "S39.0*"}},
    "other_lower_limb_or_hip_injury": {"SNOMED": {"359817006", "5913000", "71620000", "16114001", "44465007"},
                                       "ICD-10-CM": {"S70*–S99*"}},
    "fall": {"SNOMED": {"217082002", "33036003", "217155007", "217090002"}, "ICD-10-CM": {"W00*–W19*"}},
    "other_trauma": {"SNOMED": {"125605004", "65966004", "263102004", "58150001", "33737001", "70704007",
                                "384709000", "39848009", "90460009"},
                     "ICD-10-CM": {"S*", "T07*–T14*"}},
    "overweight_or_obesity": {"SNOMED": {"162863004", "162864005", "408512008", "238131007", "414915002",
                                         "414916001", "415530009", "238136002", "83911000119104"},
                              "ICD-10-CM": {"E66*", "Z68.25–Z68.45"}},
    "family_history_condition": {"ICD-10-CM": {"Z82.61", "Z82.69"}},
    "arthritis_any_site": {"SNOMED": {"396275006", "239872002", "201834006", "69896004"},
                           "ICD-10-CM": {"M05*", "M06*", "M15*–M19*"}},
    "disc_disorder": {"ICD-10-CM": {"M51*"}},
    "bmi": {"LOINC": {"39156-5"}},
    "body_weight": {"LOINC": {"29463-7", "3141-9", "3142-7", "8350-1", "8351-9"}},
    "body_height": {"LOINC": {"8302-2", "3137-7", "8306-3", "8308-9"}},
}  # fmt: skip


def test_valuesets_hold_exactly_the_codes_of_section_1b() -> None:
    raw = yaml.safe_load((REPO_ROOT / "rules" / "valuesets.yaml").read_text(encoding="utf-8"))
    found = {name: {system: set(codes) for system, codes in c["codes"].items()} for name, c in raw["concepts"].items()}
    assert found == SECTION_1B


# --- broken catalogues ------------------------------------------------------------------------


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    for name in ("valuesets.yaml", "facts.yaml"):
        shutil.copy(REPO_ROOT / "rules" / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, change: Any) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(raw)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")


def _error(rules_dir: Path) -> CatalogueError:
    with pytest.raises(CatalogueError) as caught:
        load_fact_definitions(rules_dir)
    return caught.value


def test_missing_file_is_named(rules_copy: Path) -> None:
    (rules_copy / "facts.yaml").unlink()
    error = _error(rules_copy)
    assert error.file.endswith("facts.yaml")
    assert "file not found" in str(error)


def test_invalid_yaml_is_named(rules_copy: Path) -> None:
    (rules_copy / "valuesets.yaml").write_text("concepts: [unclosed\n", encoding="utf-8")
    error = _error(rules_copy)
    assert error.file.endswith("valuesets.yaml") and "not valid YAML" in str(error)


def test_unknown_concept_names_file_fact_and_field(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"]["knee_pain"].update(concepts=["knee_pian"]))
    error = _error(rules_copy)
    assert error.file.endswith("facts.yaml")
    assert error.entry == "fact 'knee_pain'" and error.field == "concepts[0]"
    assert "unknown concept 'knee_pian'" in str(error)


def test_wrong_parameter_type_names_the_parameter(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"]["older_age"]["parameters"].update(older_age_years="fifty"))
    error = _error(rules_copy)
    assert error.entry == "fact 'older_age'"
    assert error.field is not None and error.field.endswith("parameters.older_age_years")
    assert str(error).startswith(str(rules_copy / "facts.yaml") + ": fact 'older_age': field ")


@pytest.mark.parametrize(
    ("fact", "parameter"), [("older_age", "older_age_years"), ("recent_back_injury", "recent_injury_days")]
)
def test_a_yaml_boolean_is_not_taken_as_a_number(rules_copy: Path, fact: str, parameter: str) -> None:
    """YAML reads yes, on and true as booleans: a lax int would make them a threshold of 1."""
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"][fact]["parameters"].update({parameter: True}))
    error = _error(rules_copy)
    assert error.entry == f"fact '{fact}'"
    assert error.field is not None and error.field.endswith(f"parameters.{parameter}")


def test_unknown_kind_is_refused(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"]["sciatica"].update(kind="magic"))
    error = _error(rules_copy)
    assert error.entry == "fact 'sciatica'" and "magic" in str(error)


def test_unknown_field_is_refused(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"]["sciatica"].update(threshold=3))
    error = _error(rules_copy)
    assert error.entry == "fact 'sciatica'" and error.field is not None and "threshold" in error.field


def test_stem_in_a_system_without_stems_is_refused(rules_copy: Path) -> None:
    _edit(rules_copy / "valuesets.yaml", lambda raw: raw["concepts"]["knee_pain"]["codes"]["SNOMED"].append("3098*"))
    error = _error(rules_copy)
    assert error.file.endswith("valuesets.yaml")
    assert error.entry == "concept 'knee_pain'" and error.field == "codes.SNOMED[1]"


@pytest.mark.parametrize("pattern", ["S99*–S70*", "S7*–S99*", "M17*–M19", "A–B–C", "m17*", ""])
def test_bad_code_patterns_are_refused(rules_copy: Path, pattern: str) -> None:
    _edit(rules_copy / "valuesets.yaml", lambda raw: raw["concepts"]["fall"]["codes"]["ICD-10-CM"].append(pattern))
    error = _error(rules_copy)
    assert error.entry == "concept 'fall'" and error.field == "codes.ICD-10-CM[1]"


@pytest.mark.parametrize(("system", "code"), [("SNOMED", "2305600X"), ("LOINC", "39156")])
def test_a_code_not_in_its_systems_format_is_refused(rules_copy: Path, system: str, code: str) -> None:
    """A mistyped code would simply never match: refused at load, named with its place."""
    def mistype(raw: dict) -> None:  # type: ignore[type-arg]
        concept = next(c for c in raw["concepts"].values() if system in c["codes"])
        concept["codes"][system][0] = code

    _edit(rules_copy / "valuesets.yaml", mistype)
    error = _error(rules_copy)
    assert error.field == f"codes.{system}[0]"
    assert f"'{code}' is not a {system} code (code_format" in str(error)


def test_a_code_format_that_is_not_a_regular_expression_is_refused(rules_copy: Path) -> None:
    _edit(rules_copy / "valuesets.yaml", lambda raw: raw["systems"]["SNOMED"].update(code_format="[0-9"))
    assert "not a regular expression" in str(_error(rules_copy))


def test_unknown_code_system_is_refused(rules_copy: Path) -> None:
    _edit(rules_copy / "valuesets.yaml", lambda raw: raw["concepts"]["fall"]["codes"].update(ICD10=["W19"]))
    error = _error(rules_copy)
    assert error.entry == "concept 'fall'" and "unknown code system 'ICD10'" in str(error)


def test_unknown_unit_is_refused(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["observations"]["body_weight"]["units"].append("lbs"))
    error = _error(rules_copy)
    assert error.entry == "observation 'body_weight'" and error.field == "units[3]"


def test_unit_of_the_wrong_quantity_is_refused(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["observations"]["body_height"]["units"].append("kg"))
    error = _error(rules_copy)
    assert error.entry == "observation 'body_height'" and "measures mass, not length" in str(error)


def test_bmi_fact_must_name_a_bmi_fact(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"]["excess_weight"].update(bmi_fact="older_age"))
    error = _error(rules_copy)
    assert error.entry == "fact 'excess_weight'" and error.field == "bmi_fact"


def test_observation_of_the_wrong_quantity_is_refused(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"]["bmi"].update(height="body_weight"))
    error = _error(rules_copy)
    assert error.entry == "fact 'bmi'" and error.field == "height"


def test_thresholds_come_from_the_yaml(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"]["older_age"]["parameters"].update(older_age_years=65))
    assert load_fact_definitions(rules_copy).parameters("older_age") == {"older_age_years": 65}


def test_schema_errors_name_list_positions_like_the_rule_files(rules_copy: Path) -> None:
    """facts.yaml and the rule files share one translation of pydantic's errors (service/catalogue_error.py)."""
    _edit(rules_copy / "facts.yaml", lambda raw: raw["facts"]["knee_pain"].update(concepts=[["knee_pain"]]))
    error = _error(rules_copy)
    assert error.entry == "fact 'knee_pain'" and error.field is not None and error.field.endswith("concepts[0]")
    assert str(error).endswith(": Input should be a valid string")


def test_unknown_top_level_field_says_how_to_fix_it(rules_copy: Path) -> None:
    _edit(rules_copy / "facts.yaml", lambda raw: raw.update(thresholds={}))
    error = _error(rules_copy)
    assert error.field == "thresholds" and "unknown field (check the spelling" in str(error)
