"""Device set-up for the serving process: one process per GPU, or CPU threads when there is none.

Must run before TensorFlow initialises its runtime (the first op or model load); afterwards TensorFlow
refuses changes, which is logged and ignored (it happens in tests that share one interpreter).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import tensorflow as tf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSettings:
    gpu_memory_limit_mb: int | None = None  # None: grow on demand instead of grabbing the whole GPU
    intra_op_threads: int = 0               # 0: TensorFlow's default (all cores)
    inter_op_threads: int = 0


def plan_gpu(gpu_count: int, settings: DeviceSettings) -> tuple[str | None, str]:
    """(device to place models on, memory mode) for a process that sees ``gpu_count`` GPUs.

    One serving process per GPU: with several visible, this process uses the first and the deployment is
    expected to give each replica its own (CUDA_VISIBLE_DEVICES or the device plugin).
    """
    if gpu_count == 0:
        return None, "cpu"
    return "/GPU:0", "limit" if settings.gpu_memory_limit_mb else "growth"


def configure(settings: DeviceSettings) -> str | None:
    """Apply ``settings`` to TensorFlow; return the device models should be placed on (None = default CPU)."""
    gpus = tf.config.list_physical_devices("GPU")
    device, memory = plan_gpu(len(gpus), settings)
    try:
        if settings.intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
        if settings.inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)
        if memory == "growth":
            tf.config.experimental.set_memory_growth(gpus[0], True)
        elif memory == "limit":
            tf.config.set_logical_device_configuration(
                gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=settings.gpu_memory_limit_mb)])
    except RuntimeError as exc:
        log.warning("device settings not applied (TensorFlow already initialised): %s", exc)
    log.info("serving on %s (%d GPU(s) visible)", device or "CPU", len(gpus))
    return device
