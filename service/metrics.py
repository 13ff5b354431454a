"""Prometheus metrics, one registry per app (so tests can build many apps in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Metrics", "ValidationMemoReading"]

# (hits, misses, entries) of the validation memo, read when /metrics is scraped.
ValidationMemoReading = Callable[[], tuple[int, int, int]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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

    def record_card(self, rule_id: str) -> None:
        """One card issued by ``rule_id``: ``cds_cards_total``."""
        child = self._card_children.get(rule_id)
        if child is None:
            child = self._card_children[rule_id] = self.cards.labels(rule=rule_id)
        child.inc()

    def watch_validation_memo(self, read: ValidationMemoReading) -> None:
        """Publish the validation memo's lookups and size, read at scrape time (nothing per call)."""
        self.registry.register(_ValidationMemoCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ValidationMemoCollector(Collector):
    """``cds_validation_cache_lookups_total{result}`` and ``cds_validation_cache_entries``: whether
    CDS_VALIDATION_CACHE_SIZE earns its memory in this deployment (a low hit share: lower it)."""

    def __init__(self, read: ValidationMemoReading) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        hits, misses, entries = self._read()
        lookups = CounterMetricFamily(
            "cds_validation_cache_lookups", "Resource validations answered from the memo (hit) or validated (miss)", labels=["result"]
        )
        lookups.add_metric(["hit"], hits)
        lookups.add_metric(["miss"], misses)
        yield lookups
        yield GaugeMetricFamily("cds_validation_cache_entries", "Validation outcomes remembered", value=entries)
