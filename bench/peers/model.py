"""The work every peer server does for a batch: the SavedModel's ``serving_default`` (decode + model) on
encoded images, answered as the top-1 class and score per image. Imported by peers in their own venvs, so
it needs only TensorFlow and numpy."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class Classifier:
    def __init__(self, version_dir: str):
        import tensorflow as tf

        self._tf = tf
        loaded = tf.saved_model.load(version_dir)
        self._serve = loaded.signatures["serving_default"]
        self._keep = loaded  # the signature functions need their object graph alive

    def top1(self, images: list[bytes]) -> tuple[list[int], list[float]]:
        scores = self._serve(images=self._tf.constant(images))["scores"].numpy()
        best = scores.argmax(axis=1)
        return [int(b) for b in best], [float(s[b]) for s, b in zip(scores, best)]

    def answers(self, images: list[bytes]) -> list[dict]:
        labels, scores = self.top1(images)
        return [{"label": str(label), "score": score} for label, score in zip(labels, scores)]


def settings() -> dict:
    """What the harness passes to every peer through the environment (peers' own CLIs differ)."""
    return {"version_dir": os.environ["BENCH_VERSION_DIR"], "port": int(os.environ["BENCH_PORT"]),
            "max_batch_size": int(os.environ["BENCH_MAX_BATCH_SIZE"]),
            "batch_wait_s": float(os.environ["BENCH_BATCH_WAIT_MS"]) / 1000,
            "max_queue": int(os.environ["BENCH_MAX_QUEUE"])}
