"""Two-phase transfer learning: train a new head on a frozen backbone, then fine-tune its top at a low rate."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
import tensorflow as tf

from training import data as datasets
from training.backbones import registry
from training.distribute import make_strategy
from training.model import build_classifier, unfreeze_top
from training.preprocessing import RESIZE_POLICIES, preprocess

AUGMENTATIONS = ("flip", "rotation", "zoom", "translation", "contrast")


@dataclass
class TrainConfig:
    """Everything that decides a training run; recorded in the exported model's metadata."""

    data: str
    name: str
    backbone: str = "mobilenet_v2"
    weights: str | None = None
    image_size: int = 112  # digits, default split: 2 errors of 450 at 112 px, 3-8 at 96 px
    resize: str = "stretch"
    batch_size: int = 32
    head_epochs: int = 8
    head_learning_rate: float = 3e-3
    fine_tune_epochs: int = 30
    fine_tune_learning_rate: float = 1e-3  # the peak, after one epoch of warm-up; cosine decay to 0 follows
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


def pixels_dataset(images: list[bytes], size: int, policy: str) -> tf.data.Dataset:
    """Encoded images -> uint8 pixels, through the exported model's own preprocessing."""
    encoded = tf.data.Dataset.from_tensor_slices(tf.constant(images, dtype=tf.string))
    return encoded.map(lambda e: preprocess(e, size, policy), num_parallel_calls=tf.data.AUTOTUNE)


def _dataset(images, labels, num_classes, cfg: TrainConfig, *, training: bool) -> tf.data.Dataset:
    pixels = pixels_dataset(images, cfg.image_size, cfg.resize)
    targets = tf.data.Dataset.from_tensor_slices(tf.one_hot(labels, num_classes))
    ds = tf.data.Dataset.zip((pixels, targets)).cache()
    if training:
        ds = ds.shuffle(len(images), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size)
    augmenter = _augmenter(cfg.augment, cfg.seed) if training else None
    if augmenter is not None:
        def augment(x, y):
            x = augmenter(tf.cast(x, tf.float32), training=True)
            return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'Balanced' weights n / (C * count): a rare class costs as much in the loss as a common one."""
    counts = np.bincount(labels, minlength=num_classes)
    return {i: float(len(labels) / (num_classes * max(c, 1))) for i, c in enumerate(counts)}


def _fit(model, train_ds, val_ds, epochs, cfg, class_weight, *, min_epochs: int = 0) -> dict[str, list[float]]:
    if epochs == 0:
        return {}
    has_val = val_ds is not None
    # min_epochs: under a decaying schedule the loss settles late; stopping in the noisy high-rate part
    # (seen here after 12 of 30 epochs) costs accuracy, so stopping and "best" count only from there on.
    callbacks = [keras.callbacks.EarlyStopping(
        monitor="val_loss" if has_val else "loss", patience=cfg.patience, restore_best_weights=True,
        start_from_epoch=min_epochs)]
    # shuffle=False: the tf.data pipeline shuffles; Keras would ignore the flag for a dataset and warn.
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, shuffle=False,
                        class_weight=class_weight, verbose=cfg.verbose)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def train(cfg: TrainConfig, data: datasets.LabelledImages | None = None) -> TrainedModel:
    """Load and split the data, train both phases, and score the test split."""
    cfg.validate()
    started = time.monotonic()
    keras.utils.set_random_seed(cfg.seed)
    data = data or datasets.load_images(cfg.data, min_per_class=cfg.min_per_class)
    split = datasets.split_indices(data.labels, test_fraction=cfg.test_fraction,
                                   val_fraction=cfg.val_fraction, seed=cfg.split_seed)
    num_classes = len(data.classes)
    pick = lambda idx: ([data.images[i] for i in idx], data.labels[idx])  # noqa: E731
    train_ds = _dataset(*pick(split.train), num_classes, cfg, training=True)
    val_ds = _dataset(*pick(split.val), num_classes, cfg, training=False) if len(split.val) else None
    class_weight = _class_weights(data.labels[split.train], num_classes)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)

    strategy = make_strategy()
    with strategy.scope():
        model, base = build_classifier(registry.get(cfg.backbone), cfg.image_size, num_classes,
                                       dropout=cfg.dropout, weights=cfg.weights)
        model.compile(keras.optimizers.Adam(cfg.head_learning_rate), loss, metrics=["accuracy"])
    histories = {"phase1": _fit(model, train_ds, val_ds, cfg.head_epochs, cfg, class_weight)}

    if cfg.fine_tune_epochs:
        with strategy.scope():
            unfrozen = unfreeze_top(base, cfg.fine_tune_layers)
            per_epoch = int(np.ceil(len(split.train) / cfg.batch_size))
            # A fresh Adam at full rate on a whole unfrozen backbone knocks the pretrained features about
            # (accuracy was seen to fall from 0.89 to 0.16 in the first epoch); one epoch of warm-up avoids it.
            schedule = keras.optimizers.schedules.CosineDecay(
                0.0, max(1, cfg.fine_tune_epochs - 1) * per_epoch, warmup_target=cfg.fine_tune_learning_rate,
                warmup_steps=per_epoch)
            model.compile(keras.optimizers.Adam(schedule), loss, metrics=["accuracy"])
        histories["phase2"] = _fit(model, train_ds, val_ds, cfg.fine_tune_epochs, cfg, class_weight,
                                   min_epochs=cfg.fine_tune_epochs // 2)
    else:
        unfrozen = 0

    test_images, _ = pick(split.test)
    test_pixels = pixels_dataset(test_images, cfg.image_size, cfg.resize).batch(64)
    scores = model.predict(test_pixels, verbose=0)
    return TrainedModel(model, cfg, data, split, histories, scores, time.monotonic() - started,
                        info={"unfrozen_layers": unfrozen, "config": asdict(cfg)})
