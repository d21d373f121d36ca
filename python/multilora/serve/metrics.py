"""Prometheus metrics of one server (its own CollectorRegistry, so several servers can live in one process).

Counters and histograms are updated by the request path; the gauges that describe the engine and the model (queue
depth, running rows, slot-table residents and hit/miss/eviction counts) are read when /metrics is scraped.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["ServerMetrics", "CONTENT_TYPE_LATEST"]

_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _LiveCollector:
    """Reads the engine/model numbers at scrape time from ``snapshot()`` (a dict; missing keys are skipped)."""

    def __init__(self, snapshot: Callable[[], Dict[str, Optional[float]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        try:
            s = self._snapshot()
        except Exception:  # a scrape must not fail because the engine is closing
            s = {}
        gauges = {
            "queue_depth": "Requests submitted and waiting for a row",
            "running_rows": "Rows generating now",
            "slot_table_slots": "Slots of the model's adapter slot table (0 = model not prepared for batching)",
            "slot_table_residents": "Adapter sets holding a slot now",
        }
        for key, doc in gauges.items():
            if s.get(key) is not None:
                g = GaugeMetricFamily(f"multilora_{key}", doc)
                g.add_metric([], float(s[key]))  # type: ignore[arg-type]
                yield g
        counters = {
            "slot_table_hits": "Adapter-set lookups that found the set resident",
            "slot_table_misses": "Adapter-set lookups that had to load the set into a slot",
            "slot_table_evictions": "Adapter sets evicted from the slot table",
        }
        for key, doc in counters.items():
            if s.get(key) is not None:
                c = CounterMetricFamily(f"multilora_{key}", doc)
                c.add_metric([], float(s[key]))  # type: ignore[arg-type]
                yield c


class ServerMetrics:
    def __init__(self, snapshot: Callable[[], Dict[str, Optional[float]]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "multilora_requests",
            "Requests answered, by adapter (model name) and HTTP status (499 = client gone)",
            ["adapter", "status"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "multilora_prompt_tokens", "Prompt tokens of admitted requests", ["adapter"], registry=r
        )
        self.generated_tokens = Counter("multilora_generated_tokens", "Tokens generated", ["adapter"], registry=r)
        self.ttft = Histogram(
            "multilora_time_to_first_token_seconds",
            "Submit to first generated token",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "multilora_inter_token_latency_seconds",
            "Time between consecutive generated tokens",
            buckets=_ITL_BUCKETS,
            registry=r,
        )
        r.register(_LiveCollector(snapshot))  # type: ignore[arg-type]

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
