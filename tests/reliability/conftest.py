"""Servers for the reliability tests: `tlserve serve` as a real process tree, and the shared in-process server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.service.conftest import model_repo  # noqa: F401 - the shared repository fixture (shapes + half_plus_two)


def save_slow_model(path: Path, iterations: int, input_name: str = "x") -> Path:
    """A real SavedModel whose ``serving_default`` (``x`` float32 [N, 1] -> ``y`` = 2x) burns CPU for about
    ``iterations`` x 0.3 ms per batch here, whatever the batch size, and fails its batch on a negative input
    (a TensorFlow error at run time, as a real model bug would raise)."""
    import tensorflow as tf

    class Slow(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([256, 256], seed=[1, 2]) / 16.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name=input_name)])
        def serve(self, x):
            tf.debugging.assert_non_negative(x, message="negative input")
            m = tf.eye(256)
            for _ in tf.range(iterations):
                m = tf.tanh(tf.matmul(m, self.w))
            return {"y": x * 2.0 + 0.0 * tf.reduce_sum(m)}

    module = Slow()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="session")
def slow_repo(tmp_path_factory) -> Path:
    """'slow' (~50 ms a batch) and 'slower' (~0.5 s a batch), version 1 each."""
    root = tmp_path_factory.mktemp("slow-repo")
    save_slow_model(root / "slow" / "1", 150)
    save_slow_model(root / "slower" / "1", 1500)
    return root


def items_run(server, model: str, version: str = "1") -> float:
    """How many items the model has executed (the sum of the batch-size histogram)."""
    histogram = server.runtime.metrics.batch_size.labels(model, version)
    return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_sum"))


def queue_depth(server, model: str) -> int:
    return server.runtime.repository.resolve(model).queue_depth


def wait_until(condition, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
