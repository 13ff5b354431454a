"""Where the CDS Hooks endpoints live: one prefix, read by the router, authentication, the
request metrics and the OpenAPI document, so that none of them can guard or count another."""

from __future__ import annotations

__all__ = ["CDS_PREFIX", "is_cds_path"]

CDS_PREFIX = "/cds-services"


def is_cds_path(path: str) -> bool:
    """``/cds-services`` or under it (``/cds-servicesX`` is another path)."""
    return path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/")
