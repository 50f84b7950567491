"""Every Prometheus metric of the service, in one class over one registry.

Under BentoML the registry is prometheus_client's default one, in multiprocess mode (BentoML sets
``PROMETHEUS_MULTIPROC_DIR`` before the worker imports the service), so these metrics appear on
BentoML's own ``/metrics`` beside its ``bentoml_service_*`` ones; gauges therefore carry a
``multiprocess_mode``. Tests pass a fresh ``CollectorRegistry``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric

from service.batching.batcher import BatchStats
from service.core.errors import ERROR_TABLE
from service.observability.inference_stats import InferenceStats
from tlserve.contract import SCORE_BINS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The top-1 score's buckets are the drift reference's bins (contract.SCORE_BINS), so both read alike.
SCORE_BUCKETS = tuple((i + 1) / SCORE_BINS for i in range(SCORE_BINS))
MODEL_STATES = ("LOADING", "AVAILABLE", "UNLOADING", "END")

# TF Serving's own metrics, under its names and labels, so that dashboards made for it keep working.
# request_latency is in microseconds with TF Serving's buckets (scale 10, power 1.8, 33 buckets).
TFS_LATENCY_BUCKETS_US = tuple(10 * 1.8 ** i for i in range(33))
TFS_APIS = {"predict": "Predict", "classify": "Classify", "regress": "Regress", "multi_inference": "MultiInference"}
TFS_ENTRYPOINTS = {"tfserving-grpc": "GRPC", "tfserving-rest": "REST"}
_GRPC_CODE_OF_HTTP = {kind.http_status: kind.grpc_code for kind in ERROR_TABLE} | {200: "OK", 499: "CANCELLED"}


class PlainCounter:
    """A counter exposed under exactly its name: prometheus_client's Counter would add ``_total``, which
    TF Serving's ``:tensorflow:serving:request_count`` does not have."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry):
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, *labels: str) -> None:
        self._values[labels] = self._values.get(labels, 0.0) + 1

    def collect(self):
        metric = Metric(self.name, self.documentation, "counter")
        for labels, value in sorted(self._values.items()):
            metric.add_sample(self.name, dict(zip(self.labelnames, labels, strict=True)), value)
        yield metric


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY,
                 known: Callable[[str, str], bool] = lambda model, version: True):
        """``known(model, version)``: whether the repository knows the model (and the version, when not "").
        Request labels come from requests, so an unknown name is recorded as "": any name a client sends would
        otherwise be a new series (each code, each bucket), without bound."""
        self.registry = registry
        self.known = known
        # Triton's per-version statistics: exact counts the histograms below cannot give (inference_stats.py).
        self.inference = InferenceStats()
        request_labels = ("model", "version", "protocol", "api", "code")
        self.requests = Counter("tlserve_requests", "Requests answered", request_labels, registry=registry)
        self.request_latency = Histogram("tlserve_request_latency_seconds", "Request latency, receipt to answer",
                                         request_labels, buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_wait = Histogram("tlserve_queue_wait_seconds", "Time an item waited in the batch queue",
                                    ("model", "version"), buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram("tlserve_batch_size", "Items per executed batch", ("model", "version"),
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.batch_execution = Histogram("tlserve_batch_execution_seconds", "Model execution time per batch",
                                         ("model", "version"), buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_depth = Gauge("tlserve_queue_depth", "Items waiting in the batch queues", ("model", "version"),
                                 multiprocess_mode="livesum", registry=registry)
        self.model_state = Gauge("tlserve_model_state", "1 for the state each model version is in",
                                 ("model", "version", "state"), multiprocess_mode="livemax", registry=registry)
        self.model_load = Histogram("tlserve_model_load_seconds", "Load and warm-up time of a model version",
                                    ("model",), buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
                                    registry=registry)
        self.model_loads = Counter("tlserve_model_loads", "Model versions loaded (or failed to)",
                                   ("model", "version", "result"), registry=registry)
        self.tfs_request_count = PlainCounter(":tensorflow:serving:request_count", "The total number of requests.",
                                              ("model_name", "status"), registry)
        self.tfs_request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"), buckets=TFS_LATENCY_BUCKETS_US, registry=registry)
        # What the models predict (issue 17; observability/predictions.py updates them).
        self.prediction_score = Histogram("tlserve_prediction_score", "Top-1 score of each image classified",
                                          ("model", "version"), buckets=SCORE_BUCKETS, registry=registry)
        self.predicted_class = Counter("tlserve_predicted_class", "Images by top-1 predicted class",
                                       ("model", "version", "class"), registry=registry)
        self.unconfident = Counter("tlserve_unconfident", "Images whose unknown score is above the version's "
                                   "threshold (exports with an 'unknown' threshold only)", ("model", "version"),
                                   registry=registry)
        # One BentoML worker: its latest value; with several, each worker's window is its own.
        self.prediction_drift = Gauge("tlserve_prediction_drift", "Population stability index of the recent "
                                      "predictions against the export's test split (kind: class or score)",
                                      ("model", "version", "kind"), multiprocess_mode="livemostrecent",
                                      registry=registry)

    def observe_request(self, model: str, version: str, protocol: str, api: str, code: str, seconds: float) -> None:
        model = model if model and self.known(model, "") else ""
        version = version if model and version and self.known(model, version) else ""
        labels = (model, version, protocol, api, code)
        self.requests.labels(*labels).inc()
        self.request_latency.labels(*labels).observe(seconds)
        if protocol in TFS_ENTRYPOINTS and api in TFS_APIS:
            status = code if not code.isdigit() else _GRPC_CODE_OF_HTTP.get(int(code), "UNKNOWN")
            self.tfs_request_count.inc(model, status)
            latency = self.tfs_request_latency.labels(model, TFS_APIS[api], TFS_ENTRYPOINTS[protocol])
            latency.observe(seconds * 1e6)

    def observe_batch(self, model: str, version: int, stats: BatchStats, queue_depth: int) -> None:
        labels = (model, str(version))
        self.batch_size.labels(*labels).observe(stats.size)
        self.batch_execution.labels(*labels).observe(stats.run_s)
        for wait in stats.queue_waits_s:
            self.queue_wait.labels(*labels).observe(wait)
        self.queue_depth.labels(*labels).set(queue_depth)
        self.inference.record_batch(model, version, stats)

    def model_event(self, kind: str, model: str, version: int, state: str, seconds: float) -> None:
        """Called by the repository on every load, failure and unload."""
        for s in MODEL_STATES:
            self.model_state.labels(model, str(version), s).set(1 if s == state else 0)
        if kind == "loaded":  # a version (re)loaded starts its statistics from zero, as Triton's do
            self.inference.forget(model, version)
        if kind in ("loaded", "load_failed"):
            self.model_load.labels(model).observe(seconds)
            self.model_loads.labels(model, str(version), "ok" if kind == "loaded" else "failed").inc()
