"""Prometheus metrics of one worker process, on their own registry.

A registry per ``Metrics`` object (not the global default) lets tests run several workers in
one process and lets the gateway expose only its own counters. Reject reasons are the link's
stable ``LinkError.reason`` strings plus the cloud's own ("tokenizer" for a model not loaded).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.fragments = Counter("tokencast_fragments_total", "Fragments received", registry=r)
        self.fragment_bytes = Counter("tokencast_fragment_bytes_total", "Fragment bytes received", registry=r)
        self.frames = Counter("tokencast_frames_stored_total", "Frames restored and stored", ["complete"], registry=r)
        self.frame_bytes = Counter("tokencast_frame_bytes_total", "Wire bytes of stored frames", registry=r)
        self.duplicates = Counter("tokencast_duplicates_total",
                                  "Deliveries dropped because their frame or fragment was already stored", registry=r)
        self.rejects = Counter("tokencast_link_rejected_total", "Inputs rejected and quarantined", ["reason"],
                               registry=r)
        # the store's quarantine under its QuarantinePolicy (store-wide figures, read after each reject)
        self.quarantine_entries = Gauge("tokencast_quarantine_entries", "Rejected inputs kept", registry=r)
        self.quarantine_bytes = Gauge("tokencast_quarantine_bytes", "Payload bytes of rejected inputs kept",
                                      registry=r)
        self.quarantine_truncated = Gauge("tokencast_quarantine_truncated",
                                          "Rejected inputs kept only in part (max_entry_bytes), store lifetime",
                                          registry=r)
        self.quarantine_evicted = Gauge("tokencast_quarantine_evicted",
                                        "Rejected inputs evicted, oldest first, to stay within the quota, "
                                        "store lifetime", registry=r)
        self.store_errors = Counter("tokencast_store_errors_total", "Store operations that failed", ["reason"],
                                    registry=r)
        self.restore_seconds = Histogram("tokencast_restore_seconds", "Restore + decode time per batch",
                                         buckets=(0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30), registry=r)
        self.batch_size = Histogram("tokencast_batch_frames", "Frames per restore batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.latency = Histogram("tokencast_frame_latency_seconds", "First fragment received -> frame stored",
                                 buckets=(0.05, 0.1, 0.3, 1, 3, 10, 30, 100), registry=r)
        self.degraded = Counter("tokencast_frames_degraded_total",
                                "Delta frames restored without their reference (missing or mismatched)", registry=r)
        self.control_sent = Counter("tokencast_control_sent_total",
                                    "Control messages published to cameras (cloud/downlink.py)", ["type"], registry=r)
        self.queue_depth = Gauge("tokencast_queue_depth", "Frames staged and not yet stored", registry=r)
        self.held = Gauge("tokencast_unacked_messages", "Messages held unacknowledged (store unavailable)",
                          registry=r)
        self._server: Any = None

    def serve(self, host: str, port: int) -> None:
        """Expose ``/metrics`` on ``host:port`` (a daemon thread); ``close`` stops it."""
        result = start_http_server(port, addr=host, registry=self.registry)
        self._server = result[0] if isinstance(result, tuple) else None
        log.info("metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (tests and logs)."""
        v = self.registry.get_sample_value(name, labels or None)
        return float(v or 0.0)
