"""Triton's per-version counters (observability/inference_stats.py) and their JSON (codec/triton.py), no server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from service.batching.batcher import BatchStats
from service.codec import dtypes, triton
from service.core.dataplane import ModelConfiguration
from service.core.tensors import SignatureInfo, TensorSpec
from service.observability.inference_stats import InferenceStats
from service.observability.metrics import Metrics


def test_requests_and_batches_add_up_per_version():
    stats = InferenceStats()
    stats.record_request("m", 1, ok=True, ns=500, rows=3)
    stats.record_request("m", 1, ok=False, ns=70, rows=2)
    stats.record_batch("m", 1, BatchStats(2, [0.001, 0.003], 0.010))
    stats.record_batch("m", 1, BatchStats(1, [0.002], 0.004))
    stats.record_batch("m", 1, BatchStats(2, [0.0, 0.0], 0.006))
    s = stats.snapshot("m", 1)
    assert (s.inference_count, s.execution_count) == (3, 3)  # rows of the successful request; batches run
    assert (s.success.count, s.success.ns, s.fail.count, s.fail.ns) == (1, 500, 1, 70)
    assert (s.queue.count, s.queue.ns) == (5, 6_000_000)
    assert (s.compute_infer.count, s.compute_infer.ns) == (5, 2 * 10_000_000 + 4_000_000 + 2 * 6_000_000)
    assert s.compute_input.count == s.compute_output.count == 5 and s.compute_input.ns == 0
    assert [(b.batch_size, b.compute_infer.count, b.compute_infer.ns) for b in s.batches] == [
        (1, 1, 4_000_000), (2, 2, 16_000_000)]
    assert s.last_inference_ms > 0
    assert stats.snapshot("m", 2).execution_count == 0 and stats.snapshot("other", 1).success.count == 0


def test_a_version_loaded_again_starts_from_zero():
    metrics = Metrics(CollectorRegistry())
    metrics.observe_batch("m", 1, BatchStats(4, [0.0] * 4, 0.01), queue_depth=0)
    assert metrics.inference.snapshot("m", 1).execution_count == 1
    metrics.model_event("loaded", "m", 1, "AVAILABLE", 0.5)
    assert metrics.inference.snapshot("m", 1).execution_count == 0


def test_statistics_json_has_tritons_fields():
    stats = InferenceStats()
    stats.record_batch("m", 3, BatchStats(2, [0.0, 0.0], 0.001))
    (entry,) = triton.statistics_json([stats.snapshot("m", 3)])["model_stats"]
    assert entry["version"] == "3" and entry["execution_count"] == 1
    assert set(entry["inference_stats"]) == {"success", "fail", "queue", "compute_input", "compute_infer",
                                             "compute_output", "cache_hit", "cache_miss"}
    assert entry["batch_stats"] == [{"batch_size": 2, "compute_input": {"count": 1, "ns": 0},
                                     "compute_infer": {"count": 1, "ns": 1_000_000},
                                     "compute_output": {"count": 1, "ns": 0}}]


def test_a_model_without_a_batch_dimension_keeps_its_dims_and_has_no_batcher():
    signature = SignatureInfo("serving_default", "tensorflow/serving/predict",
                              {"s": TensorSpec("s", dtypes.BYTES, (2, 3)), "n": TensorSpec("n", dtypes.INT64, None)},
                              {"o": TensorSpec("o", dtypes.FP16, (4, None))})
    config = triton.model_config_json(ModelConfiguration("m", 1, [1], signature, 0, None, has_labels=True,
                                                         policy="specific", policy_versions=(1, 3)))
    assert config["max_batch_size"] == 0 and "dynamic_batching" not in config
    assert config["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert config["input"] == [{"name": "s", "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [2, 3]},
                               {"name": "n", "data_type": "TYPE_INT64", "format": "FORMAT_NONE", "dims": [-1]}]
    assert config["output"] == [{"name": "o", "data_type": "TYPE_FP16", "dims": [4, -1],
                                 "label_filename": "labels.txt"}]
