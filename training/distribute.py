"""Which tf.distribute strategy and precision training uses on this machine.

One GPU or several: MirroredStrategy with mixed precision. Several machines: MultiWorkerMirroredStrategy,
configured by the TF_CONFIG environment variable that every worker gets. CPU: the default strategy in
float32 (no XLA: on these CPUs it made MobileNetV2 about ten times slower).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf


def plan(gpu_count: int, tf_config: str | None) -> tuple[str, str]:
    """(strategy, precision policy) for a machine with ``gpu_count`` GPUs and the given TF_CONFIG."""
    multi_worker = False
    if tf_config:
        try:
            cluster = json.loads(tf_config).get("cluster", {})
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"TF_CONFIG is not valid JSON with a 'cluster': {exc}") from exc
        multi_worker = len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1
    strategy = "multi_worker_mirrored" if multi_worker else "mirrored" if gpu_count > 0 else "default"
    return strategy, "mixed_float16" if gpu_count > 0 else "float32"


def make_strategy() -> tf.distribute.Strategy:
    """Set the precision policy and return the strategy ``plan`` picks for this machine."""
    gpus = tf.config.list_physical_devices("GPU")
    strategy, policy = plan(len(gpus), os.environ.get("TF_CONFIG"))
    keras.mixed_precision.set_global_policy(policy)
    if strategy == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
