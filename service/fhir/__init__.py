"""The facts layer: FHIR R4 JSON -> ``PatientFacts`` (named facts with their evidence).

The two entry points the rest of the service calls (signatures kept stable):

``load_fact_definitions(rules_dir: Path) -> FactDefinitions``
    Reads and checks ``rules_dir/valuesets.yaml`` and ``rules_dir/facts.yaml``; raises
    ``service.catalogue_error.CatalogueError`` naming the file, entry and field. Load once
    (at start-up, with the catalogue) and pass the result along; it holds compiled matchers.

``compute_facts(data, *, patient_id, today, definitions, memo=None) -> PatientFacts``
    ``data``: any iterable of FHIR resources and Bundles (dicts; a prefetch's values, a file's
    content). Every fact of ``definitions`` is in ``PatientFacts.facts``, holding or not, with
    evidence: all of ``facts.yaml``, or the few one service reads (``FactDefinitions.only``).
    Invalid relevant resources are skipped and listed in ``skipped``; it never raises on bad FHIR.
    ``memo``: a ``ValidationMemo`` kept across calls (validation outcomes by resource content),
    its ``for_worker_thread()`` view when computed off the event loop, or None to validate afresh.

``load_models() -> int``
    Loads the ``fhir.resources.R4B`` classes validation can reach, which that library otherwise
    imports on first use; the service calls it at start so its first hook call is not the slow one.
"""

from service.fhir.definitions import FactDefinitions, load_fact_definitions
from service.fhir.facts import compute_facts
from service.fhir.model import Evidence, Fact, PatientFacts
from service.fhir.validation import ValidationMemo, WorkerThreadMemo, load_models

__all__ = ["Evidence", "Fact", "FactDefinitions", "PatientFacts", "ValidationMemo", "WorkerThreadMemo", "compute_facts", "load_fact_definitions", "load_models"]
