"""Two-phase transfer learning: train a new head on a frozen backbone, then fine-tune its top at a low rate."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training import data as datasets
from training import distribute
from training import logs as tensorboard_logs
from training.backbones import registry
from training.distribute import make_strategy
from training.model import build_classifier, unfreeze_top
from training.preprocessing import RESIZE_POLICIES, preprocess

AUGMENTATIONS = ("flip", "rotation", "zoom", "translation", "contrast")
# Phase 2 warms up over one epoch or this many steps, whichever is longer (but at most half of phase 2):
# with 50 images an epoch is 2 steps, and two steps of warm-up to the full rate wrecked the backbone.
MIN_WARMUP_STEPS = 50
# The decoded pixels of the training and validation images are cached in memory when they take at most this
# share of the machine's memory, and on disk otherwise (in --cache-dir, or a temporary folder removed after
# training). A disk cache is read back in order, so its shuffle buffer is bounded (the split's order is
# already random: train_test_split shuffles).
MEMORY_CACHE_SHARE = 0.25
SHUFFLE_BUFFER_BYTES = 64 << 20


@dataclass
class TrainConfig:
    """Everything that decides a training run; recorded in the exported model's metadata."""

    data: str | tuple[str, ...]  # one source, or several combined (training.data.load_sources)
    name: str
    backbone: str = "mobilenet_v2"
    weights: str | None = None
    image_size: int = 112  # digits, default split: 2 errors of 450 at 112 px, 3-8 at 96 px
    resize: str = "stretch"
    batch_size: int = 32
    head_epochs: int = 8
    head_learning_rate: float = 3e-3
    fine_tune_epochs: int = 30
    fine_tune_learning_rate: float = 1e-3  # the peak, after warm-up (see warmup_steps); cosine decay to 0 follows
    fine_tune_layers: int | None = None  # None: the whole backbone
    dropout: float = 0.2
    label_smoothing: float = 0.1
    augment: tuple[str, ...] = ("rotation", "zoom", "translation")
    patience: int = 6
    test_fraction: float = 0.25
    val_fraction: float = 0.15
    min_per_class: int = 5
    seed: int = 0  # weights of the new head, shuffling, augmentation, dropout
    split_seed: int = 0  # kept apart so that runs with other training seeds are scored on the same test set
    cache_dir: str | None = None  # decoded pixels cached on disk here; None: in memory when they fit
    log_dir: str | None = None  # TensorBoard logs (training.logs); written by the chief only
    verbose: int = 1

    def validate(self) -> None:
        """Raise ValueError for settings that cannot work, before any data is read."""
        registry.get(self.backbone)
        problems = []
        if not 32 <= self.image_size <= 1024:
            problems.append(f"image size {self.image_size} must be between 32 and 1024")
        if self.resize not in RESIZE_POLICIES:
            problems.append(f"resize must be one of {RESIZE_POLICIES}")
        unknown = set(self.augment) - set(AUGMENTATIONS)
        if unknown:
            problems.append(f"unknown augmentation {sorted(unknown)}; choose from {AUGMENTATIONS}")
        if self.batch_size < 1 or self.head_epochs < 0 or self.fine_tune_epochs < 0:
            problems.append("batch size must be >= 1 and epochs >= 0")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            problems.append("dropout and label smoothing must be in [0, 1)")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class TrainedModel:
    model: keras.Model
    config: TrainConfig
    data: datasets.LabelledImages
    split: datasets.Split
    histories: dict[str, dict[str, list[float]]]
    test_scores: np.ndarray
    seconds: float
    info: dict = field(default_factory=dict)
    chief: bool = True  # False on the other workers of a cluster: they must not export


def _augmenter(names: tuple[str, ...], seed: int) -> keras.Sequential | None:
    # Digits and text must not be mirrored, so flipping is opt-in like everything else here.
    choices = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed),
        "rotation": lambda: keras.layers.RandomRotation(0.05, fill_mode="constant", seed=seed),
        "zoom": lambda: keras.layers.RandomZoom(0.1, fill_mode="constant", seed=seed),
        "translation": lambda: keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
        "contrast": lambda: keras.layers.RandomContrast(0.2, seed=seed),
    }
    return keras.Sequential([choices[n]() for n in names], name="augment") if names else None


def encoded_dataset(images) -> tf.data.Dataset:
    """Encoded image bytes, one element each: read inside tf.data from the files of an
    :class:`~training.data.ImageFiles` (nothing held in memory), or from a list of bytes."""
    if isinstance(images, datasets.ImageFiles):
        paths = tf.data.Dataset.from_tensor_slices(tf.constant(images.paths, dtype=tf.string))
        return paths.map(tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE)
    return tf.data.Dataset.from_tensor_slices(tf.constant(list(images), dtype=tf.string))


def pixels_dataset(images, size: int, policy: str) -> tf.data.Dataset:
    """Encoded images (a list of bytes or ImageFiles) -> uint8 pixels, through the exported model's own
    preprocessing."""
    return encoded_dataset(images).map(lambda e: preprocess(e, size, policy), num_parallel_calls=tf.data.AUTOTUNE)


def pixel_bytes(images: int, size: int) -> int:
    """Bytes of ``images`` decoded uint8 images of ``size`` x ``size`` x 3."""
    return images * size * size * 3


def memory_bytes() -> int:
    """Physical memory of this machine (of its cgroup when that is smaller)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def cache_on_disk(images: int, size: int, cache_dir: str | None, memory: int) -> bool:
    """Whether the pixels of ``images`` images go to a disk cache: always with a cache folder, otherwise when
    they would take more than :data:`MEMORY_CACHE_SHARE` of ``memory``."""
    return cache_dir is not None or pixel_bytes(images, size) > MEMORY_CACHE_SHARE * memory


def shuffle_buffer(images: int, size: int, on_disk: bool, batch: int) -> int:
    """Every image in memory; from a disk cache, :data:`SHUFFLE_BUFFER_BYTES` of pixels (at least a batch)."""
    if not on_disk:
        return max(1, images)
    return max(1, min(images, max(batch, SHUFFLE_BUFFER_BYTES // pixel_bytes(1, size))))


def _cache_file(cache_dir: str, images, cfg: TrainConfig, workers: int, index: int) -> str:
    """A cache file name that changes with the images' content, the preprocessing and the shard, so a cache
    left by another run is reused only for the very same pixels."""
    h = hashlib.sha256(f"{cfg.image_size} {cfg.resize} {workers} {index}".encode())
    digests = getattr(images, "digests", None)
    for item in digests if digests is not None else images:
        h.update(item.encode() if isinstance(item, str) else hashlib.sha256(item).digest())
    stem = Path(cache_dir) / f"pixels-{h.hexdigest()[:24]}"
    if not Path(f"{stem}.index").exists():  # no complete cache: remove what an interrupted run left
        for leftover in Path(cache_dir).glob(f"{stem.name}*"):
            leftover.unlink()
    return str(stem)


@dataclass
class _Feed:
    """How one split is fed: what ``fit`` gets, and the steps per epoch when every worker must take as many."""

    dataset: Any  # a tf.data.Dataset, or a tf.distribute DistributedDataset (both untyped)
    steps: int | None
    shard_images: int


def _pipeline(images, labels, class_weight, num_classes, cfg: TrainConfig, *, training: bool, batch: int,
              cache_dir: str | None, workers: int = 1, index: int = 0, repeat: bool = False) -> tf.data.Dataset:
    """(uint8 pixels, one-hot, sample weight) batches of this worker's shard. The shard is taken before
    reading and decoding, so each worker decodes only its own images. The pixels alone are cached (in
    memory, or on disk in ``cache_dir``); labels and weights are zipped on afterwards."""
    weights = tf.constant([class_weight[i] for i in range(num_classes)], tf.float32)
    encoded = encoded_dataset(images)
    targets = tf.data.Dataset.from_tensor_slices(np.asarray(labels, np.int64))
    if workers > 1:
        encoded, targets = encoded.shard(workers, index), targets.shard(workers, index)
    pixels = encoded.map(lambda e: preprocess(e, cfg.image_size, cfg.resize), num_parallel_calls=tf.data.AUTOTUNE)
    pixels = pixels.cache(_cache_file(cache_dir, images, cfg, workers, index) if cache_dir else "")
    ds = tf.data.Dataset.zip(pixels, targets).map(lambda x, y: (x, tf.one_hot(y, num_classes), tf.gather(weights, y)))
    if training:
        buffer = shuffle_buffer(len(images), cfg.image_size, cache_dir is not None, batch)
        ds = ds.shuffle(buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch)
    augmenter = _augmenter(cfg.augment, cfg.seed) if training else None
    if augmenter is not None:
        def augment(x, y, w):
            x = augmenter(tf.cast(x, tf.float32), training=True)
            return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y, w
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _feed(images, labels, class_weight, num_classes, cfg: TrainConfig, strategy, who: distribute.Role, *,
          training: bool, cache_dir: str | None = None) -> _Feed:
    """One split for ``fit`` under ``strategy``. One replica: a plain dataset. Several: each input pipeline
    (one per worker) reads its shard in per-replica batches, repeated, and an epoch is ``ceil(n / batch)``
    steps: several workers must take the same number of steps (collectives wait for everyone), and a
    replica must never get an empty last batch (BatchNormalization fails on one). So an epoch may see a
    few images twice (at most one global batch's worth)."""
    n = len(images)
    if who.replicas == 1:
        ds = _pipeline(images, labels, class_weight, num_classes, cfg, training=training, batch=cfg.batch_size,
                       cache_dir=cache_dir)
        return _Feed(ds, None, n)
    if cfg.batch_size % who.replicas:
        raise ValueError(f"batch size {cfg.batch_size} must be a multiple of the {who.replicas} replicas")
    steps = int(np.ceil(n / cfg.batch_size))

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return _pipeline(images, labels, class_weight, num_classes, cfg, training=training,
                         batch=context.get_per_replica_batch_size(cfg.batch_size), cache_dir=cache_dir,
                         workers=context.num_input_pipelines, index=context.input_pipeline_id, repeat=True)

    return _Feed(strategy.distribute_datasets_from_function(dataset_fn), steps,
                 distribute.shard_size(n, who.workers, who.worker_index))


def _class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'Balanced' weights n / (C * count): a rare class costs as much in the loss as a common one."""
    counts = np.bincount(labels, minlength=num_classes)
    return {i: float(len(labels) / (num_classes * max(c, 1))) for i, c in enumerate(counts)}


def warmup_steps(per_epoch: int, total: int) -> int:
    """Warm-up steps of phase 2: one epoch or :data:`MIN_WARMUP_STEPS`, whichever is longer, and at most
    half of phase 2's ``total`` steps (so that a short phase still spends half its steps decaying)."""
    return max(1, min(max(per_epoch, MIN_WARMUP_STEPS), total // 2))


def _fit(model, train: _Feed, val: _Feed | None, epochs, cfg, strategy, *, min_epochs: int = 0,
         extra_callbacks=()) -> tuple[dict[str, list[float]], keras.callbacks.EarlyStopping | None]:
    """Train ``epochs`` epochs; return the history and the early stopping (its ``best`` is the monitored
    value of the weights it restored), or ``({}, None)`` for no epochs."""
    if epochs == 0:
        return {}, None
    has_val = val is not None
    # min_epochs: under a decaying schedule the loss settles late; stopping in the noisy high-rate part
    # (seen here after 12 of 30 epochs) costs accuracy, so stopping and "best" count only from there on.
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss" if has_val else "loss", patience=cfg.patience, restore_best_weights=True,
        start_from_epoch=min_epochs)
    callbacks = [*extra_callbacks, stopper]  # the logs first: they must see the epoch before any restore
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.num_replicas_in_sync > 1:
        return _fit_multi_worker(model, train, val, epochs, cfg, strategy, callbacks), stopper
    # shuffle=False: the tf.data pipeline shuffles; Keras would ignore the flag for a dataset and warn.
    # Class weights come as per-example sample weights from the pipeline (Keras cannot add them to a
    # distributed dataset).
    history = model.fit(train.dataset, validation_data=val.dataset if val is not None else None, epochs=epochs,
                        steps_per_epoch=train.steps, validation_steps=val.steps if val is not None else None,
                        callbacks=callbacks, shuffle=False, verbose=cfg.verbose)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}, stopper


def _fit_multi_worker(model, train: _Feed, val: _Feed | None, epochs, cfg, strategy, callbacks) -> dict:
    """``fit`` for MultiWorkerMirroredStrategy: TensorFlow's custom training loop, with Keras' own callbacks.

    Keras 3 (3.15 here) cannot ``fit`` under MultiWorkerMirroredStrategy (keras-team/keras#20585). Seen
    here: before the first step it averages a first batch over the workers to learn its shapes, a reduce that
    fails on an (x, y, weight) structure, and it averages each step's scalar logs with ``reduce(MEAN, axis=0)``,
    which fails on scalars. This loop computes what ``fit`` would: the sample-weighted mean loss and accuracy
    over the epoch, summed over every worker, so every worker sees the same logs and stops at the same epoch;
    the Keras optimizer all-reduces the gradients, so the weights stay equal."""
    optimizer = model.optimizer  # from compile: a LossScaleOptimizer under mixed precision
    per_example = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing, reduction=None)
    with strategy.scope():
        optimizer.build(model.trainable_variables)

    def sums(y, scores, w, per):
        right = tf.cast(tf.equal(tf.argmax(scores, -1), tf.argmax(y, -1)), tf.float32)
        return tf.reduce_sum(per * w), tf.reduce_sum(right * w), tf.reduce_sum(w), tf.cast(tf.size(w), tf.float32)

    @tf.function
    def train_step(iterator):
        def step(x, y, w):
            with tf.GradientTape() as tape:
                scores = model(x, training=True)
                per = per_example(y, scores)
                loss = tf.nn.compute_average_loss(per * w, global_batch_size=cfg.batch_size)
            grads = tape.gradient(optimizer.scale_loss(loss), model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return sums(y, scores, w, per)
        return [strategy.reduce("SUM", v, axis=None) for v in strategy.run(step, args=next(iterator))]

    @tf.function
    def val_step(iterator):
        def step(x, y, w):
            scores = model(x, training=False)
            return sums(y, scores, w, per_example(y, scores))
        return [strategy.reduce("SUM", v, axis=None) for v in strategy.run(step, args=next(iterator))]

    def run(step, feed, iterator) -> dict[str, float]:
        totals = np.zeros(4)
        for _ in range(feed.steps):
            totals += [float(v) for v in step(iterator)]
        loss_sum, right, weight, count = totals
        return {"loss": loss_sum / count, "accuracy": right / weight}

    callbacks = keras.callbacks.CallbackList(callbacks, model=model, add_history=True, add_progbar=False)
    train_iterator = iter(train.dataset)
    val_iterator = iter(val.dataset) if val is not None else None
    model.stop_training = False
    callbacks.on_train_begin()
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        logs = run(train_step, train, train_iterator)
        if val is not None:
            logs.update({f"val_{k}": v for k, v in run(val_step, val, val_iterator).items()})
        callbacks.on_epoch_end(epoch, logs)
        if cfg.verbose:
            print(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        if model.stop_training:
            break
    callbacks.on_train_end()
    return {k: [float(v) for v in vals] for k, vals in model.history.history.items()}


def _best_phase(stoppers: dict) -> str:
    """The phase whose restored weights scored best on the monitored loss (validation loss, or the training
    loss without a validation split); phase 1 on a tie. Phase 2 can end worse than phase 1 (50 images: phase 1
    at loss 1.24, phase 2 at 11.05 and chance accuracy), and its own early stopping only knows phase 2."""
    first, second = stoppers.get("phase1"), stoppers.get("phase2")
    if second is None or second.best is None:
        return "phase1"
    if first is None or first.best is None:
        return "phase2"
    return "phase2" if second.best < first.best else "phase1"


def _selection(stoppers: dict) -> dict:
    """Which phase's weights were kept, at which epoch (1-based) and monitored value: for the metadata."""
    phase = _best_phase(stoppers)
    stopper = stoppers.get(phase)
    if stopper is None or stopper.best is None:
        return {"phase": phase}
    return {"phase": phase, "epoch": int(stopper.best_epoch) + 1, "monitor": stopper.monitor,
            "value": float(stopper.best)}


def train(cfg: TrainConfig, data: datasets.LabelledImages | None = None,
          strategy: tf.distribute.Strategy | None = None, split: datasets.Split | None = None,
          warm_start: Callable[[keras.Model], None] | None = None) -> TrainedModel:
    """Load and split the data, train both phases, and score the test split.

    ``strategy`` defaults to :func:`training.distribute.make_strategy`'s choice, made first: a multi-worker
    strategy can only be created before TensorFlow runs anything. ``split`` replaces the stratified split
    of ``cfg`` (bench/learning_curve.py trains on a few images per class and tests on a fixed split).
    ``warm_start`` receives the freshly built classifier before any training, to set its weights
    (training.retrain starts from a served version's)."""
    cfg.validate()
    strategy = strategy or make_strategy()
    who = distribute.role(strategy)
    started = time.monotonic()
    keras.utils.set_random_seed(cfg.seed)
    data = data or datasets.load_sources(cfg.data, min_per_class=cfg.min_per_class)
    split = split or datasets.split_indices(data.labels, test_fraction=cfg.test_fraction,
                                            val_fraction=cfg.val_fraction, seed=cfg.split_seed)
    with contextlib.ExitStack() as cleanup:
        cache_dir = _cache_dir(cfg, len(split.train) + len(split.val), cleanup)
        return _train(cfg, data, strategy, split, who, started, cache_dir, warm_start)


def _cache_dir(cfg: TrainConfig, images: int, cleanup: contextlib.ExitStack) -> str | None:
    """Where the decoded pixels are cached: None (memory), ``cfg.cache_dir``, or a temporary folder that
    ``cleanup`` removes."""
    if not cache_on_disk(images, cfg.image_size, cfg.cache_dir, memory_bytes()):
        return None
    if cfg.cache_dir:
        Path(cfg.cache_dir).mkdir(parents=True, exist_ok=True)
        return cfg.cache_dir
    temporary = tempfile.mkdtemp(prefix="tlserve-pixels-")
    cleanup.callback(shutil.rmtree, temporary, ignore_errors=True)
    return temporary


def _train(cfg, data, strategy, split, who, started, cache_dir, warm_start=None) -> TrainedModel:
    num_classes = len(data.classes)
    pick = lambda idx: (datasets.take(data.images, idx), data.labels[idx])  # noqa: E731
    class_weight = _class_weights(data.labels[split.train], num_classes)
    train_feed = _feed(*pick(split.train), class_weight, num_classes, cfg, strategy, who, training=True,
                       cache_dir=cache_dir)
    val_feed = (_feed(*pick(split.val), class_weight, num_classes, cfg, strategy, who, training=False,
                      cache_dir=cache_dir) if len(split.val) else None)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)

    with strategy.scope():
        model, base = build_classifier(registry.get(cfg.backbone), cfg.image_size, num_classes,
                                       dropout=cfg.dropout, weights=cfg.weights, pretrained=warm_start is None)
        if warm_start is not None:
            warm_start(model)
        model.compile(keras.optimizers.Adam(cfg.head_learning_rate), loss, metrics=["accuracy"])
    writer = tf.summary.create_file_writer(cfg.log_dir) if cfg.log_dir and who.chief else None
    scalars = lambda phase, first: [tensorboard_logs.EpochScalars(writer, phase, first)] if writer else []  # noqa: E731
    histories, stoppers = {}, {}
    histories["phase1"], stoppers["phase1"] = _fit(model, train_feed, val_feed, cfg.head_epochs, cfg, strategy,
                                                   extra_callbacks=scalars(1, 0))
    unfrozen = 0
    if cfg.fine_tune_epochs:
        phase1_weights = model.get_weights()  # the best of phase 1 (early stopping restored them)
        with strategy.scope():
            unfrozen = unfreeze_top(base, cfg.fine_tune_layers)
            per_epoch = int(np.ceil(len(split.train) / cfg.batch_size))
            total = cfg.fine_tune_epochs * per_epoch
            warmup = warmup_steps(per_epoch, total)
            # A fresh Adam at full rate on a whole unfrozen backbone knocks the pretrained features about
            # (accuracy was seen to fall from 0.89 to 0.16 in the first epoch); warm-up avoids it.
            schedule = keras.optimizers.schedules.CosineDecay(
                0.0, max(1, total - warmup), warmup_target=cfg.fine_tune_learning_rate, warmup_steps=warmup)
            model.compile(keras.optimizers.Adam(schedule), loss, metrics=["accuracy"])
        histories["phase2"], stoppers["phase2"] = _fit(
            model, train_feed, val_feed, cfg.fine_tune_epochs, cfg, strategy, min_epochs=cfg.fine_tune_epochs // 2,
            extra_callbacks=scalars(2, len(histories["phase1"].get("loss", []))))
        if _best_phase(stoppers) == "phase1":
            model.set_weights(phase1_weights)  # every worker decides alike: their logs are the same
    selection = _selection(stoppers)

    test_images, _ = pick(split.test)
    # In batches of --batch-size, the size chosen to fit: a fixed 64 at 224 px was seen to take 800 MB more
    # than training itself in batches of 8.
    test_pixels = pixels_dataset(test_images, cfg.image_size, cfg.resize).batch(cfg.batch_size)
    if who.replicas == 1:
        scores = model.predict(test_pixels, verbose=0)
    else:
        # Every worker scores the whole test split itself, outside the strategy: predict() under a
        # multi-worker strategy would shard the test images and gather them back in replica order.
        score = tf.function(lambda x: model(x, training=False))
        scores = np.concatenate([score(x).numpy() for x in test_pixels])
    if writer is not None:
        epochs = sum(len(h.get("loss", [])) for h in histories.values())
        tensorboard_logs.write_confusion(writer, data.labels[split.test], scores.argmax(axis=1), data.classes, epochs)
        writer.close()
    info = {"unfrozen_layers": unfrozen, "config": asdict(cfg), "distribution": who.to_dict(), "selected": selection,
            "pixel_cache": "disk" if cache_dir else "memory", "weights_sha256": distribute.weights_digest(model)}
    if who.workers > 1:
        info["shard"] = {"worker": who.worker_index, "images": train_feed.shard_images}
    return TrainedModel(model, cfg, data, split, histories, scores, time.monotonic() - started, info=info,
                        chief=who.chief)
