"""The patient-id key file: created once (0600), then read; starters racing on it all get the one key;
the same key given in CDS_PATIENT_KEY instead."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from service.cli import load_settings
from service.privacy import load_or_create_key


def test_the_key_is_created_private_and_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "patient-key"
    key = load_or_create_key(path)
    assert len(key) == 64 and int(key, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["patient-key"]  # no temporary file left


def _start(path: str, barrier: multiprocessing.synchronize.Barrier, keys: multiprocessing.Queue[bytes]) -> None:
    barrier.wait()
    keys.put(load_or_create_key(Path(path)))


def test_starters_racing_on_a_new_key_file_all_read_the_same_whole_key(tmp_path: Path) -> None:
    """Workers or replicas sharing a volume start at once. Before: one could read the file between
    its creation and the key's write, and stop with 'the patient key must be at least 16 bytes'."""
    context = multiprocessing.get_context("fork")
    for round_number in range(40):
        path = tmp_path / f"round-{round_number}" / "patient-key"
        barrier, keys = context.Barrier(4), context.Queue()
        starters = [context.Process(target=_start, args=(str(path), barrier, keys)) for _ in range(4)]
        for starter in starters:
            starter.start()
        got = {keys.get(timeout=30) for _ in starters}
        for starter in starters:
            starter.join(timeout=30)
        assert got == {path.read_bytes()} and len(path.read_bytes()) == 64, f"round {round_number}: {got}"


def test_one_secret_hashes_alike_from_the_environment_and_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas must share one key: a mounted secret ends with a newline, and the file is read stripped."""
    secret = "a-shared-secret-of-32-characters"
    key_file = tmp_path / "patient-key"
    key_file.write_text(secret + "\n")
    monkeypatch.setenv("CDS_PATIENT_KEY", secret + "\n")
    from_environment = load_settings()
    monkeypatch.delenv("CDS_PATIENT_KEY")
    monkeypatch.setenv("CDS_PATIENT_KEY_FILE", str(key_file))
    from_file = load_settings()
    assert from_environment.patient_key is not None and from_file.patient_key is None
    assert from_environment.patient_key.get_secret_value().encode() == load_or_create_key(key_file)
