"""Keyed hashing of patient ids, so the database and logs never hold a patient id in clear."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

__all__ = ["PatientHasher", "load_or_create_key", "stored_reference"]


class PatientHasher:
    """HMAC-SHA256 of a patient id under a secret key; stable for one key, useless without it."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("the patient key must be at least 16 bytes")
        self._key = key

    def __call__(self, patient_id: str) -> str:
        return hmac.new(self._key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "PatientHasher(key=***)"


def stored_reference(reference: str) -> str:
    """A ``Type/id`` reference as the audit trail stores it: a Patient by type only, as skip lines
    name it, because its id is the patient id (the hashed id is on the invocation row)."""
    return "Patient" if reference.startswith("Patient/") else reference


def load_or_create_key(path: Path) -> bytes:
    """The key stored at ``path``, generated (mode 0600) on first start."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode("ascii")
    # Written whole under a temporary name, then linked into place: when workers or replicas start
    # at once, one key wins and the others read it complete (an O_EXCL create is visible empty
    # before its key is written, and a second starter read b"").
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_bytes().strip()
    finally:
        os.unlink(temporary)
    return key
