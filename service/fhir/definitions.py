"""The fact definitions as data: ``rules/facts.yaml``, checked against ``rules/valuesets.yaml``.

The Python implements a fixed set of fact *kinds*; which concepts, statuses, thresholds and
windows each named fact uses is read from here, so a clinician changes the knowledge base,
not the code. Every problem is a ``CatalogueError`` naming the file, the entry and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, TypeAdapter, ValidationError

from service.catalogue_error import CatalogueError, from_validation_error, read_catalogue_yaml, validate_catalogue_file
from service.fhir.codes import CodeMatcher
from service.fhir.units import Unit, known_unit, known_units
from service.fhir.valuesets import VALUESETS_FILE, Concept, StrictModel, check_name, load_valuesets

__all__ = [
    "AfterClause",
    "AfterParameters",
    "AgeParameters",
    "AgeFactDefinition",
    "BmiFactDefinition",
    "BmiParameters",
    "ConditionAfterFactDefinition",
    "ConditionFactDefinition",
    "ConditionStatus",
    "ExcessWeightFactDefinition",
    "ExcessWeightParameters",
    "FactDefinition",
    "FactDefinitions",
    "FamilyHistoryFactDefinition",
    "ObservationDefinition",
    "RecentConditionFactDefinition",
    "RecentParameters",
    "Statuses",
    "WeightGainFactDefinition",
    "WeightGainParameters",
    "load_fact_definitions",
]

FACTS_FILE = "facts.yaml"

ConditionStatus = Literal["usable", "active"]
# StrictInt: YAML reads yes/no/on/off/true as booleans, which a lax int would take as 1 or 0.
_Days = Annotated[StrictInt, Field(ge=0, le=36500)]


# --- facts.yaml -------------------------------------------------------------------------------


class Statuses(StrictModel):
    """What usable and active mean (clinical-rules.md section 1), as status codes."""

    condition_unusable_verification: frozenset[str]
    condition_active_clinical: frozenset[str] = Field(min_length=1)
    observation_usable: frozenset[str] = Field(min_length=1)
    family_history_excluded: frozenset[str]


class ObservationDefinition(StrictModel):
    """An Observation the measurement facts read: its codes, what it measures, the units accepted."""

    concept: str
    quantity: Literal["mass", "length", "body_mass_index"]
    units: tuple[str, ...] = Field(min_length=1)


class _FactBase(StrictModel):
    description: str = Field(min_length=1)
    source: str = Field(min_length=1)


class AgeParameters(StrictModel):
    older_age_years: StrictInt = Field(ge=0, le=150)


class AgeFactDefinition(_FactBase):
    kind: Literal["age_at_least"]
    parameters: AgeParameters


class ConditionFactDefinition(_FactBase):
    kind: Literal["condition"]
    concepts: tuple[str, ...] = Field(min_length=1)
    status: ConditionStatus


class RecentParameters(StrictModel):
    recent_injury_days: _Days


class RecentConditionFactDefinition(_FactBase):
    kind: Literal["recent_condition"]
    concepts: tuple[str, ...] = Field(min_length=1)
    status: ConditionStatus
    parameters: RecentParameters


class AfterClause(StrictModel):
    concepts: tuple[str, ...] = Field(min_length=1)
    status: ConditionStatus


class AfterParameters(StrictModel):
    post_injury_window_days: _Days


class ConditionAfterFactDefinition(_FactBase):
    kind: Literal["condition_after"]
    concepts: tuple[str, ...] = Field(min_length=1)
    status: ConditionStatus
    after: AfterClause
    parameters: AfterParameters


class BmiParameters(StrictModel):
    bmi_window_days: _Days


class BmiFactDefinition(_FactBase):
    kind: Literal["bmi"]
    bmi: str
    weight: str
    height: str
    parameters: BmiParameters


class ExcessWeightParameters(StrictModel):
    overweight_bmi: Decimal = Field(gt=0, le=200)


class ExcessWeightFactDefinition(_FactBase):
    kind: Literal["excess_weight"]
    bmi_fact: str
    concepts: tuple[str, ...] = Field(min_length=1)
    status: ConditionStatus
    parameters: ExcessWeightParameters


class WeightGainParameters(StrictModel):
    weight_gain_percent: Decimal = Field(gt=0, le=1000)
    weight_gain_window_days: _Days


class WeightGainFactDefinition(_FactBase):
    kind: Literal["weight_gain"]
    weight: str
    parameters: WeightGainParameters


class FamilyHistoryFactDefinition(_FactBase):
    kind: Literal["family_history"]
    member_concepts: tuple[str, ...] = Field(min_length=1)
    concepts: tuple[str, ...] = Field(min_length=1)
    status: ConditionStatus


FactDefinition = Annotated[
    AgeFactDefinition
    | ConditionFactDefinition
    | RecentConditionFactDefinition
    | ConditionAfterFactDefinition
    | BmiFactDefinition
    | ExcessWeightFactDefinition
    | WeightGainFactDefinition
    | FamilyHistoryFactDefinition,
    Field(discriminator="kind"),
]
_FACT = TypeAdapter(FactDefinition)


class _FactsFile(StrictModel):
    version: str = Field(min_length=1)
    statuses: Statuses
    observations: dict[str, ObservationDefinition] = Field(min_length=1)
    facts: dict[str, Any] = Field(min_length=1)  # each entry checked on its own, to name it


# --- the loaded definitions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FactDefinitions:
    """Everything ``compute_facts`` needs: the facts in order, their concepts, a compiled matcher."""

    version: str  # facts.yaml
    valuesets_version: str
    statuses: Statuses
    concepts: Mapping[str, Concept]
    observations: Mapping[str, ObservationDefinition]
    facts: Mapping[str, FactDefinition]  # in file order
    matcher: CodeMatcher
    # What the selection keeps, derived once here from the facts: it was 14 us per request.
    condition_concepts: frozenset[str] = field(init=False, repr=False, compare=False)  # a Condition's
    member_concepts: frozenset[str] = field(init=False, repr=False, compare=False)  # a family member's condition's
    observation_concepts: Mapping[str, str] = field(init=False, repr=False, compare=False)  # concept -> observation
    # observation -> UCUM code -> Unit, the units it accepts: one probe per reading instead of two
    accepted_units: Mapping[str, Mapping[str, Unit]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "condition_concepts", _condition_concepts(self.facts))
        object.__setattr__(self, "member_concepts", _member_concepts(self.facts))
        observation_concepts = {observation.concept: name for name, observation in self.observations.items()}
        object.__setattr__(self, "observation_concepts", observation_concepts)
        accepted_units = {
            name: {code: unit for code in observation.units if (unit := known_unit(code)) is not None}
            for name, observation in self.observations.items()
        }
        object.__setattr__(self, "accepted_units", accepted_units)

    @property
    def fact_names(self) -> tuple[str, ...]:
        return tuple(self.facts)

    def only(self, names: Iterable[str]) -> FactDefinitions:
        """These definitions cut down to the facts ``names`` and those they are computed from, in
        file order: what one service's rules read. The selection derived from the facts shrinks
        with them, so a service neither reads nor validates data that none of its facts uses."""
        wanted = set(names)
        unknown = wanted - self.facts.keys()
        if unknown:
            raise KeyError(f"not a defined fact: {', '.join(sorted(unknown))}")
        pending = list(wanted)
        while pending:
            for needed in _computed_from(self.facts[pending.pop()]):
                if needed not in wanted:
                    wanted.add(needed)
                    pending.append(needed)
        facts = {name: definition for name, definition in self.facts.items() if name in wanted}
        read = {observation for definition in facts.values() for observation in _observations_read(definition)}
        observations = {name: observation for name, observation in self.observations.items() if name in read}
        return replace(self, facts=facts, observations=observations)

    def parameters(self, fact: str) -> dict[str, Any]:
        """The thresholds and windows of one fact (``{"older_age_years": 50}``)."""
        definition = self.facts[fact]
        parameters = getattr(definition, "parameters", None)
        return parameters.model_dump() if parameters is not None else {}


def _computed_from(definition: FactDefinition) -> tuple[str, ...]:
    """The other facts a fact is computed from (``_check_references`` checks they exist)."""
    if isinstance(definition, ExcessWeightFactDefinition):
        return (definition.bmi_fact,)
    return ()


def _observation_fields(definition: FactDefinition) -> dict[str, str]:
    """The fields of a fact that name an observation definition -> the quantity it must measure."""
    if isinstance(definition, BmiFactDefinition):
        return {"bmi": "body_mass_index", "weight": "mass", "height": "length"}
    if isinstance(definition, WeightGainFactDefinition):
        return {"weight": "mass"}
    return {}


def _observations_read(definition: FactDefinition) -> tuple[str, ...]:
    """The observation definitions a fact reads measurements of."""
    return tuple(getattr(definition, field) for field in _observation_fields(definition))


def _condition_concepts(facts: Mapping[str, FactDefinition]) -> frozenset[str]:
    """Every concept some fact reads a Condition of the patient for."""
    concepts: set[str] = set()
    for definition in facts.values():
        if not isinstance(definition, AgeFactDefinition | BmiFactDefinition | WeightGainFactDefinition):
            concepts.update(definition.concepts)
        if isinstance(definition, ConditionAfterFactDefinition):
            concepts.update(definition.after.concepts)
    return frozenset(concepts)


def _member_concepts(facts: Mapping[str, FactDefinition]) -> frozenset[str]:
    """Every concept some fact reads a FamilyMemberHistory condition for."""
    concepts: set[str] = set()
    for definition in facts.values():
        if isinstance(definition, FamilyHistoryFactDefinition):
            concepts.update(definition.member_concepts)
    return frozenset(concepts)


def load_fact_definitions(rules_dir: Path) -> FactDefinitions:
    """Load and check ``valuesets.yaml`` and ``facts.yaml`` from ``rules_dir``.

    Raises CatalogueError naming the file, the entry (``fact 'bmi'``) and the field.
    """
    valuesets = load_valuesets(rules_dir)
    concepts = valuesets.concepts
    facts_path = rules_dir / FACTS_FILE
    raw = validate_catalogue_file(_FactsFile, read_catalogue_yaml(facts_path), file=facts_path)
    for name, observation in raw.observations.items():
        _check_observation(name, observation, concepts, facts_path)
    facts: dict[str, FactDefinition] = {}
    for name, entry in raw.facts.items():
        where = f"fact '{name}'"
        check_name(name, facts_path, where)
        try:
            definition = _FACT.validate_python(entry)
        except ValidationError as exc:
            raise from_validation_error(exc, file=facts_path, entry=where) from None
        facts[name] = definition
    for name, definition in facts.items():
        _check_references(name, definition, concepts, raw.observations, facts, facts_path)
    return FactDefinitions(
        version=raw.version,
        valuesets_version=valuesets.version,
        statuses=raw.statuses,
        concepts=concepts,
        observations=raw.observations,
        facts=facts,
        matcher=valuesets.matcher,
    )


def _check_observation(
    name: str, observation: ObservationDefinition, concepts: Mapping[str, Concept], path: Path
) -> None:
    where = f"observation '{name}'"
    check_name(name, path, where)
    _check_concept(observation.concept, concepts, path, where, "concept")
    for index, code in enumerate(observation.units):
        unit = known_unit(code)
        if unit is None:
            raise CatalogueError(
                str(path), f"'{code}' is not a UCUM unit the facts can convert ({', '.join(known_units())})",
                entry=where, field=f"units[{index}]",
            )
        if unit.quantity != observation.quantity:
            raise CatalogueError(
                str(path), f"'{code}' measures {unit.quantity}, not {observation.quantity}",
                entry=where, field=f"units[{index}]",
            )


def _check_concept(name: str, concepts: Mapping[str, Concept], path: Path, where: str, field: str) -> None:
    if name not in concepts:
        raise CatalogueError(
            str(path), f"unknown concept '{name}'; {VALUESETS_FILE} defines: {', '.join(concepts)}",
            entry=where, field=field,
        )


def _check_references(
    name: str,
    definition: FactDefinition,
    concepts: Mapping[str, Concept],
    observations: Mapping[str, ObservationDefinition],
    facts: Mapping[str, FactDefinition],
    path: Path,
) -> None:
    where = f"fact '{name}'"
    for attribute in ("concepts", "member_concepts"):
        for index, concept in enumerate(getattr(definition, attribute, ())):
            _check_concept(concept, concepts, path, where, f"{attribute}[{index}]")
    if isinstance(definition, ConditionAfterFactDefinition):
        for index, concept in enumerate(definition.after.concepts):
            _check_concept(concept, concepts, path, where, f"after.concepts[{index}]")
    for attribute, quantity in _observation_fields(definition).items():
        observation_name = getattr(definition, attribute)
        observation = observations.get(observation_name)
        if observation is None:
            raise CatalogueError(
                str(path), f"unknown observation '{observation_name}'; 'observations' defines: {', '.join(observations)}",
                entry=where, field=attribute,
            )
        if observation.quantity != quantity:
            raise CatalogueError(
                str(path), f"observation '{observation_name}' measures {observation.quantity}, not {quantity}",
                entry=where, field=attribute,
            )
    if isinstance(definition, ExcessWeightFactDefinition):
        target = facts.get(definition.bmi_fact)
        if not isinstance(target, BmiFactDefinition):
            raise CatalogueError(
                str(path), f"'{definition.bmi_fact}' is not a fact of kind 'bmi' in this file",
                entry=where, field="bmi_fact",
            )
