"""The server's Prometheus metrics, on a registry of the app's own (never the process's
global one, so two apps in one process do not collide). ``prometheus_client`` is
imported when an app is made: importing this module needs nothing beyond NumPy.

Names (docs/serve.md, "Metrics"):

- ``edgediff_serve_queue_depth``: requests waiting to start;
- ``edgediff_serve_running_requests``: requests sampling now;
- ``edgediff_serve_denoiser_calls_total``, ``edgediff_serve_denoiser_rows_total``;
- ``edgediff_serve_batch_rows``: rows per denoiser call (histogram);
- ``edgediff_serve_batch_fill``: rows per call / --max-batch (histogram);
- ``edgediff_serve_denoiser_call_seconds``: one packed call (histogram);
- ``edgediff_serve_request_seconds{outcome}``: arrival to response (histogram);
- ``edgediff_serve_requests_total{outcome}``: ok, deadline, disconnected, failed;
- ``edgediff_serve_rejected_total{reason}``: invalid, queue_full, draining, unauthorized;
- ``edgediff_serve_cancelled_total{reason}``: requests taken out of the batch, and
  ``edgediff_serve_dropped_submissions_total``: rows they left behind.
"""

from __future__ import annotations

from edgediff.errors import missing_extra

PREFIX = "edgediff_serve_"
OUTCOMES = ("ok", "deadline", "disconnected", "failed", "shutdown")
REASONS = ("invalid", "queue_full", "draining", "unauthorized")


class ServeMetrics:
    """Histograms fed by the scheduler (``called``, its observer) and the app
    (``finished``, ``rejected``); gauges and counters read from ``scheduler.stats()`` at
    each scrape."""

    def __init__(self, max_batch: int):
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError:
            raise missing_extra("prometheus_client", "serve") from None

        self.registry = CollectorRegistry(auto_describe=True)
        self.max_batch = max_batch
        rows = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256} & set(range(1, max_batch)) | {max_batch})
        self._rows = Histogram(PREFIX + "batch_rows", "Rows per denoiser call",
                               buckets=rows, registry=self.registry)
        self._fill = Histogram(PREFIX + "batch_fill", "Rows per denoiser call / max batch",
                               buckets=(0.125, 0.25, 0.5, 0.75, 0.999, 1.0),
                               registry=self.registry)
        self._call = Histogram(PREFIX + "denoiser_call_seconds", "One packed denoiser call",
                               registry=self.registry)
        self._latency = Histogram(PREFIX + "request_seconds", "Request arrival to response",
                                  ["outcome"], registry=self.registry,
                                  buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                           30, 60, 120, 300))
        self._requests = Counter(PREFIX + "requests", "Accepted requests by outcome",
                                 ["outcome"], registry=self.registry)
        self._rejected = Counter(PREFIX + "rejected", "Requests refused, by reason",
                                 ["reason"], registry=self.registry)
        for outcome in OUTCOMES:
            self._requests.labels(outcome)
        for reason in REASONS:
            self._rejected.labels(reason)

    def watch(self, scheduler) -> None:
        """Export the scheduler's own gauges and counters at each scrape."""
        self.registry.register(_SchedulerCollector(scheduler))

    def called(self, rows: int, seconds: float) -> None:
        self._rows.observe(rows)
        self._fill.observe(rows / self.max_batch)
        self._call.observe(seconds)

    def finished(self, outcome: str, seconds: float) -> None:
        self._requests.labels(outcome).inc()
        self._latency.labels(outcome).observe(seconds)

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SchedulerCollector:
    def __init__(self, scheduler):
        self.scheduler = scheduler

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.scheduler.stats()
        yield GaugeMetricFamily(PREFIX + "queue_depth", "Requests waiting to start",
                                value=s["waiting"])
        yield GaugeMetricFamily(PREFIX + "running_requests", "Requests sampling now",
                                value=s["running"])
        yield GaugeMetricFamily(PREFIX + "max_batch", "Rows one denoiser call may pack",
                                value=s["max_batch"])
        yield CounterMetricFamily(PREFIX + "denoiser_calls", "Packed denoiser calls",
                                  value=s.get("calls", 0))
        yield CounterMetricFamily(PREFIX + "denoiser_rows", "Rows through the denoiser",
                                  value=s.get("rows", 0))
        yield CounterMetricFamily(PREFIX + "dropped_submissions",
                                  "Submissions of cancelled requests dropped from the batch",
                                  value=s.get("dropped", 0))
        cancelled = CounterMetricFamily(PREFIX + "cancelled", "Requests taken out of the "
                                        "batch, by reason", labels=["reason"])
        for reason in ("deadline", "disconnected", "shutdown"):
            cancelled.add_metric([reason], s["cancelled"].get(reason, 0))
        yield cancelled
