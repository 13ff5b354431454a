"""The one configuration object, read from ``CDS_*`` environment variables.

Built once (by the CLI, or :func:`settings_from_env` for uvicorn's factory mode) and passed
to :func:`service.app.create_app`; nothing else in the service reads a ``CDS_*`` variable.
(``outbound_tls`` reads OpenSSL's own ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, as httpx would.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.shipped import shipped_dir

__all__ = ["Settings", "settings_from_env", "settings_without_environment", "DEFAULT_RULES_DIR"]

# The catalogue shipped with the project: `rules/` at the repository root, or its copy in a wheel.
DEFAULT_RULES_DIR = shipped_dir("rules")

CommaList = Annotated[list[str], NoDecode]
# What an empty variable should have been instead.
_UNSET_INSTEAD = {
    "rules_dir": "unset it to use the catalogue shipped in rules/",
    "patient_key": "unset it to use CDS_PATIENT_KEY_FILE, or give the key all replicas share",
}


class Settings(BaseSettings):
    """Service configuration; see the README's configuration table for each variable."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", frozen=True)

    database_url: str = "sqlite:///var/back-knee-cds.sqlite3"
    auth: Literal["jwt", "off"] = "jwt"
    trusted_clients_file: Path | None = None
    public_base_url: str | None = None
    fhir_server_allowlist: CommaList = Field(default_factory=list)
    fhir_timeout_seconds: float = Field(default=2.0, gt=0, le=60, allow_inf_nan=False)
    fhir_page_limit: int = Field(default=10, ge=1, le=1000)
    cors_origins: CommaList = Field(default_factory=list)
    rules_dir: Path = DEFAULT_RULES_DIR
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    patient_key: SecretStr | None = None
    patient_key_file: Path = Path("var/patient-key")
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_prefetch_resources: int = Field(default=50_000, ge=1)
    max_json_depth: int = Field(default=64, ge=8)
    jwt_clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    jwks_cache_seconds: int = Field(default=300, ge=0)
    # Validation outcomes remembered by resource content (0: validate every resource of every call).
    validation_cache_size: int = Field(default=20_000, ge=0)
    audit_queue_size: int = Field(default=10_000, ge=1)
    # Bounded both ways: a tiny value spins a CPU while the database is down, and a huge one (inf)
    # leaves audit records waiting for a retry that never comes.
    database_retry_seconds: float = Field(default=1.0, ge=0.05, le=300, allow_inf_nan=False)
    # Apply Alembic migrations once the database answers (the container sets it; `make run` runs `db upgrade`).
    migrate_on_start: bool = False

    @field_validator("fhir_server_allowlist", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("rules_dir", "patient_key", mode="before")
    @classmethod
    def _set_but_empty(cls, value: object, info: ValidationInfo) -> object:
        # Empty is a mistake (a value that resolved to nothing), not "unset": an empty rules dir is
        # Path(".") (the working directory), and without a key each replica would quietly make its
        # own. A key is used as given, whitespace included: stored hashes were made with it (app.py
        # warns when it has surrounding whitespace).
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"is set but empty; {_UNSET_INSTEAD[info.field_name or '']}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        # logging takes level names in upper case only (`info` is what people type), and its
        # aliases WARN and FATAL, which worked before the names were checked.
        if not isinstance(value, str):
            return value
        name = value.strip().upper()
        return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)

    @field_validator("public_base_url")
    @classmethod
    def _absolute_url_without_trailing_slash(cls, value: str | None) -> str | None:
        if not value:
            return None
        # Every JWT aud and card link is built from it: a typo would refuse every client.
        if not _is_base_url(value):
            raise ValueError(f"must be an absolute http(s) URL without query or fragment, such as https://cds.example.org; got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _wildcard_cors_needs_auth_off(self) -> Settings:
        if "*" in self.cors_origins and self.auth != "off":
            raise ValueError("CDS_CORS_ORIGINS='*' needs CDS_AUTH=off; list the EHR origins instead")
        return self


def _is_base_url(value: str) -> bool:
    """An http(s) URL with a host, a valid port if any, no whitespace, query or fragment (not even empty)."""
    if any(character.isspace() for character in value) or "?" in value or "#" in value:
        return False
    parts = urlsplit(value)
    try:
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    if port == 0 or parts.netloc.endswith(":"):
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def settings_from_env() -> Settings:
    """Zero-argument factory for uvicorn's ``--factory`` multi-worker mode."""
    return Settings()


class _WithoutEnvironment(Settings):
    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, **others: Any) -> tuple[Any, ...]:
        return (init_settings,)  # not the environment, .env or secrets files


def settings_without_environment(**values: Any) -> Settings:
    """``values`` over the defaults, whatever ``CDS_*`` variables are set (for what describes the
    build, not a deployment: the OpenAPI document)."""
    return _WithoutEnvironment(**values)
