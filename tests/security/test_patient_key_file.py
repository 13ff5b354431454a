"""The patient-id key file: created once (0600), then read; starters racing on it all get the one key;
a key in CDS_PATIENT_KEY used as given."""

from __future__ import annotations

import logging
import multiprocessing
import stat
from pathlib import Path

import pytest

from service.app import create_app
from service.privacy import load_or_create_key
from tests.conftest import SettingsFactory


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


def test_the_key_file_is_read_without_surrounding_whitespace(tmp_path: Path) -> None:
    key_file = tmp_path / "patient-key"
    key_file.write_text("a-shared-secret-of-32-characters\n")  # written with echo, or a mounted secret
    assert load_or_create_key(key_file) == b"a-shared-secret-of-32-characters"


def test_a_key_in_the_environment_is_used_as_given_and_whitespace_around_it_is_warned_of(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Stripping it would change every stored patient hash of a deployment whose secret ends with a
    newline (its suppressions silently lost); the warning says why replicas could still disagree."""
    secret = "a-shared-secret-of-32-characters"
    with caplog.at_level(logging.WARNING):
        create_app(make_settings(patient_key=secret + "\n"))
    assert [r.getMessage() for r in caplog.records if "CDS_PATIENT_KEY" in r.getMessage()] == [
        "CDS_PATIENT_KEY begins or ends with whitespace, which is part of the key; the key file is read "
        "without it, so give every replica the key the same way"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        create_app(make_settings(patient_key=secret))
    assert not [r for r in caplog.records if "CDS_PATIENT_KEY" in r.getMessage()]
