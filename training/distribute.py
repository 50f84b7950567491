"""Which tf.distribute strategy and precision training uses, and what each worker of a cluster does.

One GPU or several: MirroredStrategy with mixed precision. Several machines: MultiWorkerMirroredStrategy,
configured by the TF_CONFIG environment variable that every worker gets. CPU: the default strategy in
float32 (no XLA: on these CPUs it made MobileNetV2 about ten times slower).

MultiWorkerMirroredStrategy configures TensorFlow's collective ops, which is only possible before the eager
context starts (any TensorFlow op starts it): :func:`make_strategy` must run before data is loaded.
Every worker trains on its own shard and saves; only the chief's export is kept (TensorFlow's multi-worker
guide: saving may run collective ops, so all workers save, the others into temporary folders they remove).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
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


def tf_config_from_indexed_job(environ: dict) -> str | None:
    """TF_CONFIG for a pod of a Kubernetes Indexed Job (deploy/k8s/training/indexed-job.yaml), or None.

    From ``JOB_COMPLETION_INDEX`` (Kubernetes sets it), ``TLSERVE_TRAIN_WORKERS`` (how many) and
    ``TLSERVE_TRAIN_WORKER_ADDRESS`` (host:port with ``{index}``, e.g. ``job-{index}.service:2222``).
    An explicit TF_CONFIG wins; without the three variables there is nothing to build."""
    if environ.get("TF_CONFIG") or "TLSERVE_TRAIN_WORKERS" not in environ:
        return None
    try:
        workers, index = int(environ["TLSERVE_TRAIN_WORKERS"]), int(environ["JOB_COMPLETION_INDEX"])
        address = environ["TLSERVE_TRAIN_WORKER_ADDRESS"]
    except (KeyError, ValueError) as exc:
        raise ValueError("an Indexed Job worker needs integers TLSERVE_TRAIN_WORKERS and JOB_COMPLETION_INDEX, "
                         f"and TLSERVE_TRAIN_WORKER_ADDRESS with {{index}}: {exc!r}") from exc
    if "{index}" not in address or not 0 <= index < workers:
        raise ValueError(f"TLSERVE_TRAIN_WORKER_ADDRESS {address!r} must contain {{index}}, and "
                         f"JOB_COMPLETION_INDEX {index} must be below TLSERVE_TRAIN_WORKERS {workers}")
    cluster = {"worker": [address.replace("{index}", str(i)) for i in range(workers)]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def make_strategy() -> tf.distribute.Strategy:
    """Set the precision policy and return the strategy ``plan`` picks for this machine.

    Call it before any other TensorFlow op of the process (see the module's note)."""
    built = tf_config_from_indexed_job(dict(os.environ))
    if built:
        os.environ["TF_CONFIG"] = built  # MultiWorkerMirroredStrategy reads it from the environment
    gpus = tf.config.list_physical_devices("GPU")
    strategy, policy = plan(len(gpus), os.environ.get("TF_CONFIG"))
    keras.mixed_precision.set_global_policy(policy)
    if strategy == "multi_worker_mirrored":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: MultiWorkerMirroredStrategy must be created before TensorFlow runs "
                               "anything in this process (create it first)") from exc
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class Role:
    """Where this process stands in its cluster."""

    strategy: str  # "default", "mirrored" or "multi_worker_mirrored"
    workers: int
    worker_index: int
    replicas: int  # in sync, over all workers
    chief: bool

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "workers": self.workers, "replicas": self.replicas}


def role(strategy: tf.distribute.Strategy) -> Role:
    """This worker's role under ``strategy`` (a single process is worker 0 of 1, and the chief)."""
    replicas = strategy.num_replicas_in_sync
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver
        cluster = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.task_type, resolver.task_id or 0
        # TensorFlow numbers a chief's cluster as chief, worker 0, worker 1, ...
        order = [("chief", i) for i in range(len(cluster.get("chief", [])))] + \
                [("worker", i) for i in range(len(cluster.get("worker", [])))]
        workers = len(order)
        index = order.index((task_type, task_id)) if (task_type, task_id) in order else 0
        chief = task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0
                                                               and "chief" not in cluster)
        if workers > 1:
            return Role("multi_worker_mirrored", workers, index, replicas, chief)
    name = "mirrored" if isinstance(strategy, (tf.distribute.MirroredStrategy,
                                               tf.distribute.MultiWorkerMirroredStrategy)) else "default"
    return Role(name, 1, 0, replicas, True)


def shard_size(count: int, workers: int, index: int) -> int:
    """How many of ``count`` elements ``Dataset.shard(workers, index)`` keeps."""
    return len(range(index, count, workers))


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of every weight's bytes, in the model's order: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def export_destination(root: str | Path, chief: bool) -> Iterator[Path]:
    """The model repository for the chief; for the other workers a temporary folder, removed afterwards."""
    if chief:
        yield Path(root)
        return
    temporary = Path(tempfile.mkdtemp(prefix="tlserve-worker-export-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
