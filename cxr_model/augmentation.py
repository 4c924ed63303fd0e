"""Training augmentation: random changes of framing, exposure and scanner, run inside the
tf.data input pipeline (never part of the saved model)."""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
from keras import layers

from cxr_model.config import AugmentConfig

TensorLike = Any  # a backend tensor or a NumPy array


class _SeededAugmentation(layers.Layer):
    """A training-only augmentation layer: its settings (`options`, with their off values) and
    a seeded random stream, saved and restored alike."""

    options: dict[str, float] = {}

    def __init__(self, seed: int | None = None, **kwargs):
        settings = {name: kwargs.pop(name, off) for name, off in self.options.items()}
        super().__init__(**kwargs)
        for name, value in settings.items():
            setattr(self, name, value)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self):
        return {**super().get_config(), **{name: getattr(self, name) for name in self.options}, "seed": self.seed}

    def _uniform(self, shape, low: float = 0.0, high: float = 1.0):
        """Uniform draws from this layer's seeded stream."""
        return keras.random.uniform(shape, low, high, seed=self.seed_generator)


@keras.saving.register_keras_serializable(package="cxr")
class RandomScanner(_SeededAugmentation):
    """Random gamma curve and sensor noise on 0-255 pixels, mimicking other scanners."""

    options = {"gamma": 0.0, "noise": 0.0, "exp_log": False}

    def call(self, x, training=True):
        if not training:
            return x
        shape = keras.ops.shape(x)
        if self.gamma > 0:
            log_gamma = keras.random.uniform((shape[0], 1, 1, 1), -self.gamma, self.gamma,
                                             seed=self.seed_generator)
            x = keras.ops.clip(x / 255.0, 1e-6, 1.0)
            if self.exp_log:  # the same curve, 4x faster here than the general power op
                x = 255.0 * keras.ops.exp(keras.ops.exp(log_gamma) * keras.ops.log(x))
            else:
                x = 255.0 * keras.ops.power(x, keras.ops.exp(log_gamma))
        if self.noise > 0:
            sigma = keras.random.uniform((shape[0], 1, 1, 1), 0.0, self.noise, seed=self.seed_generator)
            x = keras.ops.clip(x + sigma * keras.random.normal(shape, seed=self.seed_generator), 0.0, 255.0)
        return x


@keras.saving.register_keras_serializable(package="cxr")
class RandomGeometry(_SeededAugmentation):
    """Rotation, zoom and shift as one affine resampling: one interpolation instead of three, in
    about half the time of three Keras layers. The films come out sharper, and a model trained on
    them leaned more on framing and tilt (results.md FA1), so it is an option, not the default."""

    options = {"rotation_deg": 0.0, "zoom_out": 0.0, "zoom_in": 0.0, "shift": 0.0}

    def call(self, x, training=True):
        if not training:
            return x
        shape = keras.ops.shape(x)
        n, h, w = shape[0], keras.ops.cast(shape[1], "float32"), keras.ops.cast(shape[2], "float32")
        angle = self._uniform((n,), -1.0, 1.0) * (self.rotation_deg * math.pi / 180.0)
        zoom = self._uniform((n,), 1.0 - self.zoom_in, 1.0 + self.zoom_out)  # > 1 reads a larger field: zoom out
        tx = self._uniform((n,), -self.shift, self.shift) * w
        ty = self._uniform((n,), -self.shift, self.shift) * h
        return keras.ops.image.affine_transform(
            x, affine_transforms(angle, zoom, tx, ty, h, w),
            interpolation="bilinear", fill_mode="constant", fill_value=0.0)


def affine_transforms(angle: TensorLike, zoom: TensorLike, tx: TensorLike, ty: TensorLike,
                      h: TensorLike, w: TensorLike) -> TensorLike:
    """Per-image rows [a0, a1, a2, b0, b1, b2, 0, 0] mapping an output pixel (x, y) to the input
    pixel (a0 x + a1 y + a2, b0 x + b1 y + b2): scaled by `zoom` and turned by `angle` (radians)
    about the image centre, then moved by (tx, ty) pixels."""
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    cos, sin = zoom * keras.ops.cos(angle), zoom * keras.ops.sin(angle)
    a2 = cx - cos * cx + sin * cy + tx
    b2 = cy - sin * cx - cos * cy + ty
    zero = keras.ops.zeros_like(angle)
    return keras.ops.stack([cos, -sin, a2, sin, cos, b2, zero, zero], axis=1)


@keras.saving.register_keras_serializable(package="cxr")
class RandomResolution(_SeededAugmentation):
    """Half the images shrunk by a random factor up to `max_factor` and enlarged back, as films
    archived at a lower resolution arrive; one factor per batch keeps the resize shapes few."""

    options = {"max_factor": 1.0}

    def call(self, x, training=True):
        if not training or self.max_factor <= 1.0:
            return x
        import tensorflow as tf  # a data-dependent output size: the TF backend's resize

        size = tf.shape(x)[1:3]
        factor = keras.random.uniform((), 1.0, self.max_factor, seed=self.seed_generator)
        small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) / factor), tf.int32), 1)
        restored = tf.image.resize(tf.image.resize(x, small, antialias=True), size)
        chosen = keras.random.uniform((tf.shape(x)[0], 1, 1, 1), seed=self.seed_generator) < 0.5
        return tf.where(chosen, tf.clip_by_value(restored, 0.0, 255.0), x)


@keras.saving.register_keras_serializable(package="cxr")
class RandomAspect(_SeededAugmentation):
    """Each image stretched along one random axis: a centred crop keeping 1 - s of the height or
    of the width (s uniform up to `max_share`), resized back. The sources were squashed to
    squares from films of many shapes, so how squashed a film looks must not carry the answer."""

    options = {"max_share": 0.0}

    def call(self, x, training=True):
        if not training or self.max_share <= 0.0:
            return x
        import tensorflow as tf

        n, size = tf.shape(x)[0], tf.shape(x)[1:3]
        share = self._uniform((n,), -self.max_share, self.max_share)  # > 0: taller, < 0: wider
        keep_h, keep_w = 1.0 - tf.maximum(share, 0.0), 1.0 + tf.minimum(share, 0.0)
        return tf.image.crop_and_resize(x, centred_crop_boxes(keep_h, keep_w), tf.range(n), size)


def centred_crop_boxes(keep_h: TensorLike, keep_w: TensorLike) -> TensorLike:
    """crop_and_resize boxes (y1, x1, y2, x2 in 0-1) of centred crops keeping those shares of
    the height and width, one per image: the aspect augmentation and the framing and aspect
    probes crop the same way."""
    return keras.ops.stack([(1 - keep_h) / 2, (1 - keep_w) / 2, (1 + keep_h) / 2, (1 + keep_w) / 2], axis=1)


@keras.saving.register_keras_serializable(package="cxr")
class RandomCornerMask(_SeededAugmentation):
    """Half the images get their four corners blacked out, squares of a random share of the
    side up to `max_share`: side markers and burned-in text differ by site, so they must not
    carry the answer."""

    options = {"max_share": 0.0}

    def call(self, x, training=True):
        if not training or self.max_share <= 0.0:
            return x
        import tensorflow as tf

        n, h, w = tf.shape(x)[0], tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
        share = keras.random.uniform((n, 1, 1, 1), 0.0, self.max_share, seed=self.seed_generator)
        chosen = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator) < 0.5
        rows = tf.range(h)[None, :, None, None]
        cols = tf.range(w)[None, None, :, None]
        k_h, k_w = tf.round(share * h), tf.round(share * w)  # whole pixels: four equal squares
        in_rows = (rows < k_h) | (rows >= h - k_h)
        in_cols = (cols < k_w) | (cols >= w - k_w)
        return tf.where(chosen & in_rows & in_cols, tf.zeros_like(x), x)


@keras.saving.register_keras_serializable(package="cxr")
class RandomErase(_SeededAugmentation):
    """Half the images get one rectangle, 2 % up to `max_share` of their area and of random
    shape and place, filled with their mean grey: no single patch of lung may carry the answer."""

    options = {"max_share": 0.0}

    def call(self, x, training=True):
        if not training or self.max_share <= 0.0:
            return x
        import tensorflow as tf

        n, h, w = tf.shape(x)[0], tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
        per_image = (n, 1, 1, 1)
        area = self._uniform(per_image, min(0.02, self.max_share), self.max_share)
        ratio = tf.exp(self._uniform(per_image, math.log(0.3), math.log(1 / 0.3)))  # height / width
        eh = tf.round(tf.minimum(tf.sqrt(area * ratio), 1.0) * h)
        ew = tf.round(tf.minimum(tf.sqrt(area / ratio), 1.0) * w)
        top = tf.floor(self._uniform(per_image) * (h - eh + 1))
        left = tf.floor(self._uniform(per_image) * (w - ew + 1))
        rows = tf.range(h)[None, :, None, None]
        cols = tf.range(w)[None, None, :, None]
        inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
        chosen = self._uniform(per_image) < 0.5
        mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
        return tf.where(chosen & inside, mean, x)  # the mean broadcast over each image


def gaussian_kernel_3x3(sigma):
    """Keras's 3x3 Gaussian blur kernel (rows by sigma[1], columns by sigma[0]), built by the
    same operations so its values match bit for bit."""
    import tensorflow as tf

    x = tf.range(3, dtype=tf.float32) - 1.0

    def one_axis(s):
        k = tf.exp(-0.5 * (x / s) ** 2)
        return k / tf.reduce_sum(k)

    return tf.tensordot(one_axis(sigma[1]), one_axis(sigma[0]), axes=0)


def shifted_sum(images, kernel):
    """A 3x3 blur of (n, h, w, 1) images, zero-padded, as nine weighted shifted copies summed in
    the kernel's row-major order: the order TensorFlow's depthwise convolution sums in on the
    CPUs where `shifted_sum_blur_is_exact` holds."""
    import tensorflow as tf

    h, w = tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    out = 0.0
    for i in range(3):
        for j in range(3):
            out = out + kernel[i, j] * padded[:, i:i + h, j:j + w, :]
    return out


def gaussian_blur(kind: type, factor: float, seed: int) -> layers.Layer:
    """The augmenter's random blur as `kind` (Keras's layer or ShiftedSumBlur): one place for its
    sigma range, so the exactness check and the benchmark test the blur training uses."""
    return kind(factor, sigma=(0.1, 1.2), value_range=(0, 255), seed=seed)


def through_pipeline(layer: layers.Layer, films, batch_size: int):
    """`films` in batches through a training-mode augmentation layer in a tf.data map: where
    training runs the augmenter (results there can differ in the last bits from eager or a
    plain tf.function)."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(films).batch(batch_size).map(lambda x: layer(x, training=True))


@functools.cache
def shifted_sum_blur_is_exact() -> bool:
    """Whether, on this CPU, `ShiftedSumBlur` gives Keras's blur bit for bit where training runs
    it (checked once per process on random films). Only then does the augmenter use it: about
    3x cheaper than the depthwise convolution on AVX2 hosts, where the blur took a third of
    each epoch, and the same model (results.md, the AVX2 section)."""
    import numpy as np

    films = np.random.default_rng(0).uniform(0, 255, (16, 64, 64, 1)).astype(np.float32)
    outputs = [np.concatenate([b.numpy() for b in through_pipeline(gaussian_blur(kind, 1.0, 0), films, 4)])
               for kind in (layers.RandomGaussianBlur, ShiftedSumBlur)]
    return bool(np.array_equal(*outputs)) and not np.array_equal(outputs[1], films)


@keras.saving.register_keras_serializable(package="cxr")
class ShiftedSumBlur(layers.RandomGaussianBlur):
    """Keras's random Gaussian blur (3x3, the same random draws), its convolution computed as
    `shifted_sum`."""

    def transform_images(self, images, transformation=None, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if training and transformation is not None:
            blurred = shifted_sum(images, gaussian_kernel_3x3(transformation["blur_factor"]))
            apply = transformation["should_apply_blur"][:, None, None, None]
            images = self.backend.numpy.where(apply, blurred, images)
            images = self.backend.numpy.clip(images, self.value_range[0], self.value_range[1])
            images = self.backend.cast(images, dtype=self.compute_dtype)
        return images


def build_augmenter(cfg: AugmentConfig, seed: int) -> keras.Sequential:
    """Random geometric and intensity changes, run inside the tf.data input pipeline."""
    steps: list[layers.Layer] = []
    if cfg.aspect > 0:  # first: the squash happened before anything else did to the film
        steps.append(RandomAspect(max_share=cfg.aspect, seed=seed + 12))
    # zoom_in widens the zoom range on the zoom-in side alone (random crops of the chest), so
    # tight framing, common in one cohort's pneumonia films, stops being a class cue.
    zoom_in = max(cfg.zoom, cfg.zoom_in)
    if cfg.fused and (cfg.rotation_deg > 0 or zoom_in > 0 or cfg.shift > 0):
        steps.append(RandomGeometry(rotation_deg=cfg.rotation_deg, zoom_out=cfg.zoom, zoom_in=zoom_in,
                                    shift=cfg.shift, seed=seed))
    if not cfg.fused and cfg.rotation_deg > 0:
        steps.append(layers.RandomRotation(cfg.rotation_deg / 360.0, fill_mode="constant", seed=seed))
    if not cfg.fused and zoom_in > 0:  # negative factors zoom in
        steps.append(layers.RandomZoom((-zoom_in, cfg.zoom), fill_mode="constant", seed=seed + 1))
    if not cfg.fused and cfg.shift > 0:
        steps.append(layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="constant", seed=seed + 2))
    if cfg.corners > 0:
        # After the geometry, so the squares sit in the corners of what the model sees.
        steps.append(RandomCornerMask(max_share=cfg.corners, seed=seed + 10))
    if cfg.erase > 0:
        # Before the intensity changes, so the patch gets the same exposure and noise as the film.
        steps.append(RandomErase(max_share=cfg.erase, seed=seed + 11))
    if cfg.brightness > 0:
        steps.append(layers.RandomBrightness(cfg.brightness, value_range=(0, 255), seed=seed + 3))
    if cfg.contrast > 0:
        steps.append(layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed + 4))
    if cfg.blur > 0:
        blur = ShiftedSumBlur if shifted_sum_blur_is_exact() else layers.RandomGaussianBlur
        steps.append(gaussian_blur(blur, cfg.blur, seed + 6))
    if cfg.sharpen > 0:
        # Edge enhancement as digital radiography systems apply it, with vendor-specific strength
        # (0.5 leaves the image as it is; up to 0.5 + sharpen enhances).
        steps.append(layers.RandomSharpness((0.5, 0.5 + cfg.sharpen), value_range=(0, 255), seed=seed + 8))
    if cfg.downscale > 1:
        steps.append(RandomResolution(max_factor=cfg.downscale, seed=seed + 9))
    if cfg.gamma > 0 or cfg.noise > 0:
        steps.append(RandomScanner(gamma=cfg.gamma, noise=cfg.noise, exp_log=cfg.fused, seed=seed + 7))
    if cfg.horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 5))
    # Every augmentation off: an identity step (an empty Sequential cannot be built).
    return keras.Sequential(steps or [layers.Identity()], name="augment")
