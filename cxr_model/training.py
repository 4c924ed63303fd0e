"""Fit the CNN on cached arrays with augmentation in a parallel tf.data pipeline."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_model.augmentation import build_augmenter
from cxr_model.config import Config, TrainConfig
from cxr_model.data import pneumonia_type
from cxr_model.model import (TYPES, build_ensemble, build_model, keras, pneumonia_only, towers_mean,
                             with_towers, with_type_head)
from cxr_model.preprocess import Arrays
import tensorflow as tf

log = logging.getLogger("cxr.training")


@dataclass(frozen=True)
class TrainResult:
    model: keras.Model
    history: pd.DataFrame
    seconds: float
    images_per_second: float
    best_epoch: int
    best_val_auc: float
    member_best_epochs: tuple[int, ...] = ()


def class_weights(y: np.ndarray, mode: str) -> dict[int, float] | None:
    """Inverse-frequency weights so the 3:1 pneumonia majority does not dominate the loss
    (none when the classes are balanced by resampling instead)."""
    if mode in ("none", "resample"):
        return None
    counts = np.bincount(y, minlength=2).astype(float)
    if (counts == 0).any():
        return None
    return {c: float(len(y) / (2 * counts[c])) for c in (0, 1)}


def type_labels(arrays: Arrays) -> np.ndarray:
    """Index into model.TYPES per image (-1: a pneumonia film whose file name does not say)."""
    names = ["normal" if y == 0 else pneumonia_type(path) for y, path in zip(arrays.y, arrays.paths)]
    return np.array([TYPES.index(n) if n in TYPES else -1 for n in names], dtype=np.int64)


def _columns(arrays: Arrays, with_types: bool) -> tuple[np.ndarray, ...]:
    return (arrays.x, arrays.y, type_labels(arrays)) if with_types else (arrays.x, arrays.y)


def _balanced_stream(train: Arrays, seed: int, with_types: bool = False) -> tf.data.Dataset:
    """An epoch of len(train) images drawn half from each class (the minority repeats, a fresh
    share of the majority each epoch): balanced batches instead of weighted losses."""
    columns = _columns(train, with_types)
    per_class = [
        tf.data.Dataset.from_tensor_slices(tuple(col[train.y == c] for col in columns))
        .shuffle(int((train.y == c).sum()), seed=seed + c, reshuffle_each_iteration=True).repeat()
        for c in (0, 1)
    ]
    mixed = tf.data.Dataset.sample_from_datasets(per_class, weights=[0.5, 0.5], seed=seed,
                                                 rerandomize_each_iteration=True)
    return mixed.take(len(train))


def _weight_vector(weights: dict[int, float] | None) -> tf.Tensor:
    """Class weights as a tensor indexed by label (ones without weights), for losses weighted in the data."""
    return tf.constant([weights[0], weights[1]] if weights else [1.0, 1.0], tf.float32)


class MixUp:
    """Blends random pairs within a batch, labels and loss weights alike (mixup): no single cue
    can carry a confident answer, a known guard against shortcuts that fail on other cohorts."""

    def __init__(self, alpha: float, weights: dict[int, float] | None, seed: int):
        self.alpha = alpha
        self.weights = _weight_vector(weights)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def __call__(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        n = tf.shape(x)[0]
        lam = keras.random.beta((n,), self.alpha, self.alpha, seed=self.seed_generator)
        partner = keras.random.shuffle(tf.range(n), seed=self.seed_generator)

        def blend(v):
            shape = tf.concat([[n], tf.ones([tf.rank(v) - 1], tf.int32)], axis=0)
            w = tf.reshape(lam, shape)
            return w * v + (1.0 - w) * tf.gather(v, partner)

        return blend(x), blend(tf.cast(y, tf.float32)), blend(tf.gather(self.weights, y))


def fixed_pipeline() -> tf.data.Options:
    """tf.data options without autotuning: Keras makes a new iterator every epoch, and with
    autotuning on, closing the old one stalled up to 15 s with every core idle (every other
    epoch took 40 s instead of 24; benchmarks/results.md, "The stall between epochs")."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def make_datasets(
    train: Arrays, val: Arrays, cfg: Config, seed: int | None = None
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Shuffled, augmented training batches prepared in parallel with the training step (with
    mixup, they carry their own loss weights: fit then passes no class weights)."""
    seed = cfg.train.seed if seed is None else seed
    augment = build_augmenter(cfg.train.augment, seed)
    parallel = 1 if cfg.train.deterministic else max(2, os.cpu_count() or 2)
    prefetch = 2  # batches ready ahead of the training step
    with_types = cfg.train.type_head_weight > 0
    towers = cfg.model.towers

    def augment_batch(x, *labels):
        return augment(tf.cast(x, tf.float32), training=True), *labels

    if cfg.train.class_weights == "resample":
        train_ds = _balanced_stream(train, seed, with_types)
    else:
        train_ds = (tf.data.Dataset.from_tensor_slices(_columns(train, with_types))
                    .shuffle(len(train), seed=seed, reshuffle_each_iteration=True))
    train_ds = (
        train_ds
        .batch(cfg.train.batch_size)
        # One augmentation thread keeps the random draws in a fixed order (reproducible runs);
        # it still overlaps with the training step through prefetch.
        .map(augment_batch, num_parallel_calls=parallel)
    )
    if cfg.train.mixup > 0:
        mix = MixUp(cfg.train.mixup, class_weights(train.y, cfg.train.class_weights), seed + 11)
        train_ds = train_ds.map(mix, num_parallel_calls=parallel)
    if with_types:
        train_ds = train_ds.map(_TypeTargets(class_weights(train.y, cfg.train.class_weights)))
    if towers > 1:
        train_ds = train_ds.map(_TowerTargets(class_weights(train.y, cfg.train.class_weights), towers))
    train_ds = train_ds.prefetch(prefetch).with_options(fixed_pipeline())
    val_ds = (
        tf.data.Dataset.from_tensor_slices(_columns(val, with_types))
        .batch(max(cfg.train.batch_size, 128))
        .map(lambda x, *labels: (tf.cast(x, tf.float32), *labels))
    )
    if with_types:
        val_ds = val_ds.map(_TypeTargets(None))
    if towers > 1:
        val_ds = val_ds.map(_TowerTargets(None, towers))
    val_ds = val_ds.prefetch(prefetch).with_options(fixed_pipeline())
    return train_ds, val_ds


class _TypeTargets:
    """(x, y, type) batches -> the two outputs' targets and loss weights: class weights on both, and
    no type loss for films whose type is unknown (fit then passes no class weights)."""

    def __init__(self, weights: dict[int, float] | None):
        self.weights = _weight_vector(weights)

    def __call__(self, x: tf.Tensor, y: tf.Tensor, types: tf.Tensor):
        w = tf.gather(self.weights, y)
        known = tf.cast(types >= 0, tf.float32)
        return x, {"pneumonia": y, "type": tf.maximum(types, 0)}, {"pneumonia": w, "type": w * known}


class _TowerTargets:
    """(x, y) batches -> every tower's target and class weights, and the mean's (for its metrics):
    Keras takes no class weights for several outputs (fit then passes none)."""

    def __init__(self, weights: dict[int, float] | None, towers: int):
        self.weights = _weight_vector(weights)
        self.names = ["pneumonia", *(f"member{k + 1}" for k in range(towers))]

    def __call__(self, x: tf.Tensor, y: tf.Tensor):
        w = tf.gather(self.weights, y)
        return x, {name: y for name in self.names}, {name: w for name in self.names}


class _EpochTimer(keras.callbacks.Callback):
    """Adds the learning rate and wall time of each epoch to the logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._start
            lr = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))


def make_optimizer(tc: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam (AdamW when weight_decay > 0) with an optional linear warm-up, then cosine decay;
    with ema_momentum > 0 it also keeps a moving average of the weights (Polyak averaging)."""
    warmup = min(tc.warmup_epochs, tc.epochs - 1) * steps_per_epoch  # no warm-up in a 1-epoch run
    decay = max(1, steps_per_epoch * tc.epochs - warmup)
    alpha = tc.min_learning_rate / tc.learning_rate
    if warmup:
        schedule = keras.optimizers.schedules.CosineDecay(
            tc.learning_rate * 0.1, decay_steps=decay, alpha=alpha,
            warmup_target=tc.learning_rate, warmup_steps=warmup,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(tc.learning_rate, decay_steps=decay, alpha=alpha)
    ema = {"use_ema": True, "ema_momentum": tc.ema_momentum} if tc.ema_momentum > 0 else {}
    if tc.weight_decay > 0:
        return keras.optimizers.AdamW(schedule, weight_decay=tc.weight_decay, **ema)
    return keras.optimizers.Adam(schedule, **ema)


def _fit_member(train: Arrays, val: Arrays, cfg: Config, checkpoint: Path, seed: int) -> tuple[keras.Model, pd.DataFrame]:
    """One CNN with early stopping and checkpointing on validation AUC; its best weights."""
    tc = cfg.train
    keras.utils.set_random_seed(seed)
    model = build_model(cfg.preprocess.image_size, cfg.model, seed, tc.precision)
    # TensorFlow cannot combine op determinism with XLA; say so instead of Keras's bare warning.
    jit = tc.jit_compile and not tc.deterministic
    if tc.jit_compile and not jit:
        log.info("train: XLA off: train.deterministic is on and TensorFlow cannot combine the two")
    with_types, towers = tc.type_head_weight > 0, cfg.model.towers
    loss = keras.losses.BinaryCrossentropy(label_smoothing=tc.label_smoothing)
    metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    if with_types:
        trained = with_type_head(model)
        losses = {"pneumonia": loss, "type": keras.losses.SparseCategoricalCrossentropy()}
        weights = {"pneumonia": 1.0, "type": tc.type_head_weight}
    elif towers > 1:  # each tower on its own loss; "loss" is then their mean, comparable with one model's
        trained = with_towers([model] + [build_model(cfg.preprocess.image_size, cfg.model, seed + 1000 * k,
                                                     tc.precision) for k in range(1, towers)])
        losses = {f"member{k + 1}": loss for k in range(towers)}
        weights = {name: 1.0 / towers for name in losses}
    else:
        trained, losses, weights = model, loss, None
    several = with_types or towers > 1
    trained.compile(
        optimizer=make_optimizer(tc, steps_per_epoch=int(np.ceil(len(train) / tc.batch_size))),
        loss=losses, loss_weights=weights, metrics={"pneumonia": metrics} if several else metrics,
        jit_compile=jit,
    )
    monitor = "val_pneumonia_auc" if several else "val_auc"
    train_ds, val_ds = make_datasets(train, val, cfg, seed)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    # With EMA, the averaged weights are the ones validated, checkpointed and kept.
    ema = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if tc.ema_momentum > 0 else []
    callbacks = [
        _EpochTimer(),
        *ema,
        keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor, mode="max", save_best_only=True),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max", patience=tc.early_stopping_patience,
            start_from_epoch=tc.early_stopping_start, restore_best_weights=True,
        ),
    ]
    weights_in_data = tc.mixup > 0 or several
    hist = trained.fit(train_ds, validation_data=val_ds, epochs=tc.epochs,
                       class_weight=None if weights_in_data else class_weights(train.y, tc.class_weights),
                       callbacks=callbacks,
                       shuffle=False, verbose=2)
    # Early stopping restores the best weights only when it stops early; make it unconditional.
    best = keras.models.load_model(checkpoint)
    history = pd.DataFrame(hist.history)
    if with_types:
        return pneumonia_only(best), history.rename(columns=_pneumonia_names)
    if towers > 1:
        return towers_mean(best), history.rename(columns=lambda c: c.replace("pneumonia_", ""))
    return best, history


def _pneumonia_names(column: str) -> str:
    """History columns of the two-output model under the one-output names (loss: the pneumonia
    output's; total_loss: with the weighted type loss), so runs compare column for column."""
    prefix = "val_" if column.startswith("val_") else ""
    name = column[len(prefix):]
    if name == "loss":
        return f"{prefix}total_loss"
    return prefix + name.removeprefix("pneumonia_")


def validation_auc(model: keras.Model, val: Arrays) -> float:
    """Validation AUC computed the way Keras reports val_auc during training."""
    metric = keras.metrics.AUC()
    metric.update_state(val.y, predict(model, val.x))
    return float(metric.result())


def fit(train: Arrays, val: Arrays, cfg: Config, checkpoint: Path) -> TrainResult:
    """Train model.ensemble CNNs (seeds seed, seed+1, ...) and keep their average."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError("training and validation splits must both hold images")
    tc = cfg.train
    if tc.deterministic:
        tf.config.experimental.enable_op_determinism()
    n = cfg.model.ensemble
    log.info("train: %d train / %d val images, %d px, class weights %s, up to %d epochs%s",
             len(train), len(val), cfg.preprocess.image_size, class_weights(train.y, tc.class_weights),
             tc.epochs, f" for each of {n} ensemble members" if n > 1 else "")
    if tc.type_head_weight > 0:
        unknown, normal, bacterial, viral = np.bincount(type_labels(train) + 1, minlength=4)
        log.info("train: type head (loss weight %s): %d normal, %d bacterial, %d viral, %d pneumonia films "
                 "whose names give no type (no type loss)", tc.type_head_weight, normal, bacterial, viral, unknown)
        if bacterial + viral == 0:
            log.warning("train: no file name gives a pneumonia type (personN_bacteria_/personN_virus_): "
                        "the type head learns nothing; set train.type_head_weight: 0")
    members, histories, best_epochs, offset = [], [], [], 0
    start = time.perf_counter()
    for k in range(n):
        if n > 1:
            log.info("train: ensemble member %d/%d (seed %d)", k + 1, n, tc.seed + k)
        path = checkpoint if n == 1 else checkpoint.with_name(f"{checkpoint.stem}-member{k + 1}{checkpoint.suffix}")
        model, history = _fit_member(train, val, cfg, path, tc.seed + k)
        history.insert(0, "epoch", np.arange(1, len(history) + 1) + offset)
        if n > 1:
            history.insert(1, "member", k + 1)
        best_epochs.append(int(history["epoch"].iloc[int(history["val_auc"].idxmax())]))
        offset += len(history)
        members.append(model)
        histories.append(history)
    seconds = time.perf_counter() - start
    history = pd.concat(histories, ignore_index=True)
    model = build_ensemble(members)
    best_val_auc = float(history["val_auc"].max()) if n == 1 else validation_auc(model, val)
    if n > 1:
        log.info("train: ensemble of %d, validation AUC %.4f (members: %s)", n, best_val_auc,
                 ", ".join(f"{h['val_auc'].max():.4f}" for h in histories))
    return TrainResult(
        model=model,
        history=history,
        seconds=seconds,
        images_per_second=len(train) * len(history) / seconds,
        best_epoch=best_epochs[-1],
        best_val_auc=best_val_auc,
        member_best_epochs=tuple(best_epochs),
    )


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities of pneumonia for uint8 images shaped (n, size, size, 1)."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.float32)
    return model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0).reshape(-1)
