"""Prometheus metrics of one service instance: requests by route and status, their latencies,
predictions in flight, batch sizes and model inference time (its own registry, so two apps in
one process, as in tests, never share counters).

Under `medsight serve --processes N`, $PROMETHEUS_MULTIPROC_DIR is set (a private folder made by
the parent) and prometheus_client's multiprocess mode writes each worker's values there: any
worker answering /metrics reports the sum over all of them (gauges over the live ones).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


class ServiceMetrics:
    """The service's metrics; `render` gives the text exposition format."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("medsight_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("medsight_request_seconds", "HTTP request latency by route",
                                 ["route", "method"], buckets=_LATENCY, registry=r)
        self.in_flight = Gauge("medsight_predictions_in_flight",
                               "Predictions accepted and not yet answered (the bounded queue)",
                               registry=r, multiprocess_mode="livesum")
        self.queue_depth = Gauge("medsight_batch_queue_depth",
                                 "Prepared inputs waiting for a batch, by model", ["model"], registry=r,
                                 multiprocess_mode="livesum")
        self.batch_size = Histogram("medsight_batch_size", "Inputs per inference batch, by model",
                                    ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.inference = Histogram("medsight_inference_seconds",
                                   "Model inference (and storage) time per batch, by model", ["model"],
                                   buckets=_LATENCY, registry=r)
        self.rejected = Counter("medsight_uploads_rejected", "Uploads refused, by HTTP status",
                                ["status"], registry=r)
        self.decode_workers_lost = Gauge("medsight_decode_workers_lost",
                                         "Decode workers replaced after a crash, timeout or OOM",
                                         registry=r, multiprocess_mode="sum")

    def render(self) -> bytes:
        folder = os.environ.get(MULTIPROC_ENV)
        if not folder:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        for path in Path(folder).glob("gauge_live*_*.db"):  # workers gone (killed): not live
            pid = int(path.stem.rsplit("_", 1)[1])
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, folder)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return generate_latest(registry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
