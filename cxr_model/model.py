"""The CNN and its augmentation layers (Keras 3, TensorFlow backend)."""

from __future__ import annotations

import keras
from keras import layers

from cxr_model.config import AugmentConfig, ModelConfig
from cxr_model.normalization import normalization


def _conv_bn(x, filters: int, name: str, strides: int = 1, kernel: int = 3, relu: bool = True,
             separable: bool = False):
    # Depthwise-separable: a 3x3 filter per channel, then a 1x1 mix (about 8x fewer multiplies).
    # A conv reading the single grey channel stays dense: separable, it would learn one filter.
    conv = layers.SeparableConv2D if separable and kernel > 1 and x.shape[-1] > 1 else layers.Conv2D
    x = conv(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"conv{name}")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"bn{name}")(x)
    return layers.ReLU(name=f"relu{name}")(x) if relu else x


def _plain_body(x, cfg: ModelConfig):
    """VGG-like: conv-BN-ReLU blocks at full resolution, each followed by max-pooling."""
    for i, filters in enumerate(cfg.filters):
        # Deeper blocks run at low resolution, so a second conv there is cheap capacity.
        for j in range(cfg.convs_deep if i >= 2 else 1):
            x = _conv_bn(x, filters, f"{i + 1}" if j == 0 else f"{i + 1}_{j + 1}", separable=cfg.separable)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
        if i > 0:
            x = layers.SpatialDropout2D(0.1, name=f"drop{i + 1}")(x)
    return x


def _residual_block(x, filters: int, name: str, strides: int, separable: bool = False):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, f"{name}_proj", strides=strides, kernel=1, relu=False)
    y = _conv_bn(x, filters, f"{name}_a", strides=strides, separable=separable)
    y = _conv_bn(y, filters, f"{name}_b", relu=False, separable=separable)
    return layers.ReLU(name=f"relu{name}_out")(layers.Add(name=f"add{name}")([shortcut, y]))


def _residual_body(x, cfg: ModelConfig):
    """ResNet-like: a strided stem, then one strided residual block per stage (about 2.5x faster
    per image on this CPU than the plain body, which convolves at full resolution)."""
    # Stride 4 reads non-overlapping 4x4 patches: a larger input for the same body cost
    # (192 px with stride 4 convolves 48x48 maps, 128 px with stride 2 64x64).
    x = _conv_bn(x, cfg.stem_filters, "_stem", strides=cfg.stem_stride, kernel=max(3, cfg.stem_stride))
    for i, filters in enumerate(cfg.filters):
        x = _residual_block(x, filters, f"{i + 1}", strides=2, separable=cfg.separable)
        for j in range(1, cfg.convs_deep if i >= 2 else 1):
            x = _residual_block(x, filters, f"{i + 1}_{j + 1}", strides=1, separable=cfg.separable)
        if i > 0:
            x = layers.SpatialDropout2D(0.1, name=f"drop{i + 1}")(x)
    return x


def build_model(image_size: int, cfg: ModelConfig, seed: int, precision: str = "float32") -> keras.Model:
    """Conv body (plain or residual), global pooling, dense head, sigmoid.

    The model takes raw 0-255 grayscale pixels and normalises them itself, so a saved model
    needs no preprocessing beyond the shared decode-and-resize. With precision
    "mixed_bfloat16" the layers compute in bfloat16 (weights and the output stay float32).
    """
    keras.utils.set_random_seed(seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return _build(image_size, cfg)
    finally:
        keras.config.set_dtype_policy(previous)


def _build(image_size: int, cfg: ModelConfig) -> keras.Model:
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = normalization(inputs, cfg)
    x = _residual_body(x, cfg) if cfg.arch == "residual" else _plain_body(x, cfg)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(cfg.dropout, name="head_drop1")(x)
    x = layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(cfg.dropout, name="head_drop2")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="cxr_cnn")


TYPES = ("normal", "bacteria", "virus")  # the auxiliary type head's classes, in this order


def with_type_head(model: keras.Model) -> keras.Model:
    """The CNN plus a softmax over normal / bacterial / viral on the features its pneumonia output
    reads (train.type_head_weight): the features must then tell viral films, the weaker type,
    from normal ones. Used in training only; `pneumonia_only` gives back the served model."""
    features = model.get_layer("pneumonia").input
    types = layers.Dense(len(TYPES), activation="softmax", name="type", dtype="float32")(features)
    return keras.Model(model.input, {"pneumonia": model.get_layer("pneumonia").output, "type": types},
                       name=model.name)


def pneumonia_only(model: keras.Model) -> keras.Model:
    """The single-output CNN inside a model trained with the type head (the same layers)."""
    return keras.Model(model.input, model.get_layer("pneumonia").output, name="cxr_cnn")


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    """One model averaging the members' probabilities: saved, served and explained as one."""
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(shape=members[0].input_shape[1:], name="image")
    named = [keras.Model(m.input, m.output, name=f"member{k + 1}") for k, m in enumerate(members)]
    outputs = layers.Average(name="pneumonia_mean", dtype="float32")([m(inputs) for m in named])
    return keras.Model(inputs, outputs, name="cxr_ensemble")


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """The member CNNs of an ensemble, or the model itself."""
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return members or [model]


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


@keras.saving.register_keras_serializable(package="cxr")
class RandomScanner(_SeededAugmentation):
    """Random gamma curve and sensor noise on 0-255 pixels, mimicking other scanners."""

    options = {"gamma": 0.0, "noise": 0.0}

    def call(self, x, training=True):
        if not training:
            return x
        shape = keras.ops.shape(x)
        if self.gamma > 0:
            log_gamma = keras.random.uniform((shape[0], 1, 1, 1), -self.gamma, self.gamma,
                                             seed=self.seed_generator)
            x = 255.0 * keras.ops.power(keras.ops.clip(x / 255.0, 1e-6, 1.0), keras.ops.exp(log_gamma))
        if self.noise > 0:
            sigma = keras.random.uniform((shape[0], 1, 1, 1), 0.0, self.noise, seed=self.seed_generator)
            x = keras.ops.clip(x + sigma * keras.random.normal(shape, seed=self.seed_generator), 0.0, 255.0)
        return x


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


def build_augmenter(cfg: AugmentConfig, seed: int) -> keras.Sequential:
    """Random geometric and intensity changes, run inside the tf.data input pipeline."""
    steps: list[layers.Layer] = []
    if cfg.rotation_deg > 0:
        steps.append(layers.RandomRotation(cfg.rotation_deg / 360.0, fill_mode="constant", seed=seed))
    if cfg.zoom > 0 or cfg.zoom_in > 0:
        # Negative factors zoom in: zoom_in widens that side alone (random crops of the chest),
        # so tight framing, common in one cohort's pneumonia films, stops being a class cue.
        zoom_range = (-max(cfg.zoom, cfg.zoom_in), cfg.zoom)
        steps.append(layers.RandomZoom(zoom_range, fill_mode="constant", seed=seed + 1))
    if cfg.shift > 0:
        steps.append(layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="constant", seed=seed + 2))
    if cfg.corners > 0:
        # After the geometry, so the squares sit in the corners of what the model sees.
        steps.append(RandomCornerMask(max_share=cfg.corners, seed=seed + 10))
    if cfg.brightness > 0:
        steps.append(layers.RandomBrightness(cfg.brightness, value_range=(0, 255), seed=seed + 3))
    if cfg.contrast > 0:
        steps.append(layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed + 4))
    if cfg.blur > 0:
        steps.append(layers.RandomGaussianBlur(cfg.blur, sigma=(0.1, 1.2), value_range=(0, 255), seed=seed + 6))
    if cfg.sharpen > 0:
        # Edge enhancement as digital radiography systems apply it, with vendor-specific strength
        # (0.5 leaves the image as it is; up to 0.5 + sharpen enhances).
        steps.append(layers.RandomSharpness((0.5, 0.5 + cfg.sharpen), value_range=(0, 255), seed=seed + 8))
    if cfg.downscale > 1:
        steps.append(RandomResolution(max_factor=cfg.downscale, seed=seed + 9))
    if cfg.gamma > 0 or cfg.noise > 0:
        steps.append(RandomScanner(gamma=cfg.gamma, noise=cfg.noise, seed=seed + 7))
    if cfg.horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 5))
    # Every augmentation off: an identity step (an empty Sequential cannot be built).
    return keras.Sequential(steps or [layers.Identity()], name="augment")
