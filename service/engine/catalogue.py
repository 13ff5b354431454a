"""Loads the rule catalogue from ``rules/``: services, their prefetch templates, and rules.

MINIMAL SEAM: services only; the rules, value sets and facts definitions plug in here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.catalogue_error import CatalogueError

__all__ = ["Catalogue", "ServiceDefinition", "load_catalogue"]


class ServiceDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str
    hooks: list[str] = Field(min_length=1)
    prefetch: dict[str, str]


class Catalogue(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    services: dict[str, ServiceDefinition]

    def service(self, service_id: str) -> ServiceDefinition | None:
        return self.services.get(service_id)

    @property
    def suppress_days(self) -> dict[str, int]:
        """Rule id -> days a suppressing override lasts (clinical-rules.md section 3)."""
        return {}


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(str(path), "file not found") from None
    except yaml.YAMLError as exc:
        raise CatalogueError(str(path), f"not valid YAML: {exc}") from None


def load_catalogue(rules_dir: Path) -> Catalogue:
    path = rules_dir / "services.yaml"
    raw = _read_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), list):
        raise CatalogueError(str(path), "expected a mapping with a 'services' list")
    services: dict[str, ServiceDefinition] = {}
    for index, entry in enumerate(raw["services"]):
        try:
            service = ServiceDefinition.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            raise CatalogueError(str(path), first["msg"], rule=f"services[{index}]", field=field) from None
        services[service.id] = service
    return Catalogue(version=str(raw.get("version", "1")), services=services)
