"""Prometheus metrics, one registry per app (so tests can build many apps in one process).

Under ``serve --workers N`` each worker is its own process, and a scrape reaches one of them. So
``serve`` gives the workers a shared directory (``SharedMetricsDirectory``), prometheus_client
keeps every count in files there (its multiprocess mode), and ``/metrics`` sums all workers: a
counter that jumped between one worker's count and another's would read as a reset every scrape.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["Metrics", "MetricsRoomError", "SharedMetricsDirectory", "ValidationMemoReading", "reserve_shared_files"]

_log = logging.getLogger(__name__)

# prometheus_client's own switch: read when it is first imported, so set before workers start.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set beside it by ``serve``: /metrics sums the files only in a directory serve made for this run.
# A PROMETHEUS_MULTIPROC_DIR set by someone else may hold other runs' or programs' files.
MADE_BY_SERVE_ENV = "BACK_KNEE_CDS_SHARED_METRICS_DIR"
# Room reserved for each of a worker's count files (prometheus_client starts them at 64 KiB, sparse,
# and grows them as label values come): 10 service labels x 13 statuses fill 321 KiB of histogram
# file and 20 KiB of counter file (measured with prometheus-client 0.26).
RESERVED_FILE_BYTES = 1 << 20
_FILE_KINDS = ("counter", "histogram", "gauge_livesum")

# (hits, misses, entries) of the validation memo, read when /metrics is scraped (or, with workers
# sharing their counts, after each CDS Hooks request).
ValidationMemoReading = Callable[[], tuple[int, int, int]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._shared_directory = _shared_directory()
        self._memo_publisher: _MemoPublisher | None = None
        self.requests = Counter(
            "cds_requests_total", "CDS Hooks requests by service and status", ["service", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "cds_request_seconds",
            "CDS Hooks request latency by service and status",
            ["service", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.cards = Counter("cds_cards_total", "Cards issued by rule", ["rule"], registry=self.registry)
        self.feedback = Counter("cds_feedback_total", "Feedback items stored by outcome", ["outcome"], registry=self.registry)
        self.fhir_fetches = Counter(
            "cds_fhir_fetches_total", "FHIR server fetches by outcome (ok, error, timeout)", ["outcome"], registry=self.registry
        )
        self.audit_lost = Counter(
            "cds_audit_records_lost_total", "Audit records dropped: write queue full, refused by the database, or unwritten at shutdown", registry=self.registry
        )
        self.auth_failures = Counter(
            "cds_auth_failures_total", "Requests refused with 401, by failed check", ["check"], registry=self.registry
        )
        # The labelled children of the per-call metrics, looked up once per label value: labels()
        # checks and sorts its arguments under a lock on every call. The label values are bounded
        # (service ids, HTTP statuses, rule ids) and prometheus_client keeps each child anyway.
        self._request_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._card_children: dict[str, Counter] = {}

    def record_request(self, service: str, status: int, seconds: float) -> None:
        """One answered CDS Hooks request: ``cds_requests_total`` and ``cds_request_seconds``."""
        children = self._request_children.get((service, status))
        if children is None:
            labels = {"service": service, "status": str(status)}
            children = self._request_children[(service, status)] = (self.requests.labels(**labels), self.latency.labels(**labels))
        requests, latency = children
        requests.inc()
        latency.observe(seconds)
        if self._memo_publisher is not None:
            self._memo_publisher.publish()

    def record_card(self, rule_id: str) -> None:
        """One card issued by ``rule_id``: ``cds_cards_total``."""
        child = self._card_children.get(rule_id)
        if child is None:
            child = self._card_children[rule_id] = self.cards.labels(rule=rule_id)
        child.inc()

    def watch_validation_memo(self, read: ValidationMemoReading) -> None:
        """Publish the validation memo's lookups and size: read at scrape time (nothing per call), or,
        when workers share the counts, copied after each CDS Hooks request (a scrape reads files)."""
        if self._shared_directory is None:
            self.registry.register(_ValidationMemoCollector(read))
        else:
            self._memo_publisher = _MemoPublisher(read, self.registry)

    def render(self) -> bytes:
        if self._shared_directory is None:
            return generate_latest(self.registry)
        _forget_dead_workers(self._shared_directory)
        every_worker = CollectorRegistry()
        every_worker.register(_ReadableFilesCollector(self._shared_directory))
        return generate_latest(every_worker)


class SharedMetricsDirectory:
    """A new directory for the workers' counts, made at once (OSError when no temporary directory
    can be made), named in PROMETHEUS_MULTIPROC_DIR inside the ``with`` (workers are spawned, so
    they inherit it), removed at its end: counts never carry over from an earlier run."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="back-knee-cds-metrics-")
        self._before: str | None = None

    def __enter__(self) -> str:
        self._before = os.environ.get(MULTIPROCESS_ENV)
        os.environ[MULTIPROCESS_ENV] = os.environ[MADE_BY_SERVE_ENV] = self.path
        return self.path

    def __exit__(self, *exc_info: object) -> None:
        os.environ.pop(MADE_BY_SERVE_ENV, None)
        if self._before is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = self._before
        shutil.rmtree(self.path, ignore_errors=True)


class MetricsRoomError(RuntimeError):
    """No room for a worker's count files: its start fails (``create_serving_app_from_env``)."""


def reserve_shared_files() -> None:
    """In a worker sharing its counts: make this process's count files now, their room allocated.

    prometheus_client writes counts through memory-mapped files, and a write to a page the
    filesystem has no room for kills the process (SIGBUS): with a full TMPDIR every worker died at
    its first call and uvicorn started another, forever. Allocated here, a full disk stops the
    worker's start with one line instead. Raises MetricsRoomError then; does nothing when not sharing.
    """
    directory = _shared_directory()
    if directory is None:
        return
    for kind in _FILE_KINDS:
        path = Path(directory) / f"{kind}_{os.getpid()}.db"  # the name prometheus_client gives it
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(descriptor, 0, RESERVED_FILE_BYTES)
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise MetricsRoomError(f"cannot reserve room for the /metrics counts in {directory} ({exc.strerror or exc})") from None


def _shared_directory() -> str | None:
    """The directory ``serve`` made for its workers' counts, when prometheus_client writes this
    process's counts there (its choice, made at its first import); else None."""
    if values.ValueClass is values.MutexValue:
        return None
    directory = os.environ.get(MADE_BY_SERVE_ENV)
    return directory if directory and directory == os.environ.get(MULTIPROCESS_ENV) else None


def _forget_dead_workers(directory: str) -> None:
    """A worker that has ended (uvicorn starts another when one dies, and all anew on SIGHUP) leaves
    its gauge file: take it out of the sums. Its counter files stay: what it counted happened."""
    for file in Path(directory).glob("gauge_live*_*.db"):
        pid = file.stem.rpartition("_")[2]
        if pid.isdigit() and not _running(int(pid)):
            file.unlink(missing_ok=True)  # another worker's scrape may have taken it out first


class _ReadableFilesCollector(Collector):
    """prometheus_client's MultiProcessCollector, less the files it cannot read: one bad file (a
    worker killed while making it, something else's .db) would otherwise fail every scrape."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        files = sorted(str(path) for path in Path(self._directory).glob("*.db"))
        try:
            return iter(MultiProcessCollector.merge(files, accumulate=True))
        except Exception:  # noqa: BLE001 - which file, and how it is broken, is found below
            readable = [file for file in files if _readable(file)]
            _log.warning("metrics: skipped unreadable count files", extra={"skipped": len(files) - len(readable)})
            return iter(MultiProcessCollector.merge(readable, accumulate=True))


def _readable(file: str) -> bool:
    try:
        MultiProcessCollector.merge([file], accumulate=True)
    except Exception:  # noqa: BLE001 - struct, JSON, OS and value errors alike mean unreadable
        return False
    return True


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


class _MemoPublisher:
    """The validation memo's reading as shared metrics: the same names and meaning as
    ``_ValidationMemoCollector``'s, summed over workers (lookups) and live workers (entries)."""

    def __init__(self, read: ValidationMemoReading, registry: CollectorRegistry) -> None:
        self._read = read
        lookups = Counter("cds_validation_cache_lookups", _LOOKUPS_HELP, ["result"], registry=registry)
        self._hits, self._misses = lookups.labels(result="hit"), lookups.labels(result="miss")
        self._entries = Gauge("cds_validation_cache_entries", _ENTRIES_HELP, registry=registry, multiprocess_mode="livesum")
        self._published = (0, 0, 0)

    def publish(self) -> None:
        reading = self._read()
        if reading == self._published:
            return
        hits, misses, entries = reading
        if hits > self._published[0]:
            self._hits.inc(hits - self._published[0])
        if misses > self._published[1]:
            self._misses.inc(misses - self._published[1])
        self._entries.set(entries)
        self._published = reading


_LOOKUPS_HELP = "Resource validations answered from the memo (hit) or validated (miss)"
_ENTRIES_HELP = "Validation outcomes remembered"


class _ValidationMemoCollector(Collector):
    """``cds_validation_cache_lookups_total{result}`` and ``cds_validation_cache_entries``: whether
    CDS_VALIDATION_CACHE_SIZE earns its memory in this deployment (a low hit share: lower it)."""

    def __init__(self, read: ValidationMemoReading) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        hits, misses, entries = self._read()
        lookups = CounterMetricFamily("cds_validation_cache_lookups", _LOOKUPS_HELP, labels=["result"])
        lookups.add_metric(["hit"], hits)
        lookups.add_metric(["miss"], misses)
        yield lookups
        yield GaugeMetricFamily("cds_validation_cache_entries", _ENTRIES_HELP, value=entries)
