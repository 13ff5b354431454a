"""`back-knee-cds serve` freezes start-up objects and raises the first GC threshold, in its own process only."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.runtime import FIRST_GENERATION_THRESHOLD, create_serving_app_from_env, tune_gc_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_freezes_and_raises_the_first_threshold() -> None:
    _, second, third = gc.get_threshold()
    tune_gc_for_serving()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (FIRST_GENERATION_THRESHOLD, second, third)
    assert gc.isenabled()


@pytest.mark.usefixtures("restored_gc")
def test_worker_factory_builds_the_app_and_tunes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CDS_AUTH", "off")
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cds.sqlite3'}")
    monkeypatch.setenv("CDS_PATIENT_KEY", "test-patient-key-0123456789abcdef")
    hangup = signal.getsignal(signal.SIGHUP)
    try:
        app = create_serving_app_from_env()
        # A worker leaves a hangup to the supervisor (tests/runtime/test_graceful_shutdown.py).
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, hangup)  # servers this test run starts later inherit it
    assert getattr(app, "title", None) == "back-knee-cds"
    assert gc.get_threshold()[0] == FIRST_GENERATION_THRESHOLD
