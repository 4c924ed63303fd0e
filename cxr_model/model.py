"""The CNN (Keras 3, TensorFlow backend); its training augmentation is in augmentation.py."""

from __future__ import annotations

import keras
from keras import layers

from cxr_model.config import ModelConfig
from cxr_model.normalization import normalization


def _conv_bn(x, filters: int, name: str, strides: int = 1, kernel: int = 3, relu: bool = True,
             separable: bool = False):
    # Depthwise-separable: a 3x3 filter per channel, then a 1x1 mix (about 8x fewer multiplies).
    # A conv reading the single grey channel stays dense: separable, it would learn one filter.
    conv = layers.SeparableConv2D if separable and kernel > 1 and x.shape[-1] > 1 else layers.Conv2D
    x = conv(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"conv{name}")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"bn{name}")(x)
    return layers.ReLU(name=f"relu{name}")(x) if relu else x


def _squeeze_excite(x, ratio: int, name: str):
    """Channel attention (squeeze-and-excitation): every feature map scaled by a gate in (0, 1)
    read from all maps' means over the whole film, so a finding's maps can be raised and the
    rest damped per film. ratio 0: none; else the gate's hidden width is channels / ratio."""
    if ratio == 0:
        return x
    channels = x.shape[-1]
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"se{name}_pool")(x)
    gate = layers.Dense(max(channels // ratio, 4), activation="relu", name=f"se{name}_squeeze")(gate)
    gate = layers.Dense(channels, activation="sigmoid", name=f"se{name}_gate")(gate)
    return layers.Multiply(name=f"se{name}_scale")([x, gate])


def _plain_body(x, cfg: ModelConfig):
    """VGG-like: conv-BN-ReLU blocks at full resolution, each followed by max-pooling."""
    for i, filters in enumerate(cfg.filters):
        # Deeper blocks run at low resolution, so a second conv there is cheap capacity.
        for j in range(cfg.convs_deep if i >= 2 else 1):
            x = _conv_bn(x, filters, f"{i + 1}" if j == 0 else f"{i + 1}_{j + 1}", separable=cfg.separable)
        x = _squeeze_excite(x, cfg.squeeze_excite, f"{i + 1}")
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
        x = _spatial_dropout(x, cfg, i)
    return x


def _spatial_dropout(x, cfg: ModelConfig, stage: int):
    # Whole feature maps dropped after every stage but the first: no single map can carry a cue.
    if stage == 0 or cfg.spatial_dropout == 0:
        return x
    return layers.SpatialDropout2D(cfg.spatial_dropout, name=f"drop{stage + 1}")(x)


def _residual_block(x, filters: int, name: str, strides: int, separable: bool = False, squeeze_excite: int = 0):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, f"{name}_proj", strides=strides, kernel=1, relu=False)
    y = _conv_bn(x, filters, f"{name}_a", strides=strides, separable=separable)
    y = _conv_bn(y, filters, f"{name}_b", relu=False, separable=separable)
    y = _squeeze_excite(y, squeeze_excite, name)  # on the residual branch, before the sum (SE-ResNet)
    return layers.ReLU(name=f"relu{name}_out")(layers.Add(name=f"add{name}")([shortcut, y]))


def _residual_body(x, cfg: ModelConfig):
    """ResNet-like: a strided stem, then one strided residual block per stage (about 2.5x faster
    per image on this CPU than the plain body, which convolves at full resolution)."""
    # Stride 4 reads non-overlapping 4x4 patches: a larger input for the same body cost
    # (192 px with stride 4 convolves 48x48 maps, 128 px with stride 2 64x64).
    x = _conv_bn(x, cfg.stem_filters, "_stem", strides=cfg.stem_stride, kernel=max(3, cfg.stem_stride))
    for i, filters in enumerate(cfg.filters):
        x = _residual_block(x, filters, f"{i + 1}", strides=2, separable=cfg.separable,
                            squeeze_excite=cfg.squeeze_excite)
        for j in range(1, cfg.convs_deep if i >= 2 else 1):
            x = _residual_block(x, filters, f"{i + 1}_{j + 1}", strides=1, separable=cfg.separable,
                                squeeze_excite=cfg.squeeze_excite)
        x = _spatial_dropout(x, cfg, i)
    return x


def build_model(image_size: int, cfg: ModelConfig, seed: int, precision: str = "float32") -> keras.Model:
    """Conv body (plain or residual), global pooling (average, max or GeM), dense head, sigmoid.

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


@keras.saving.register_keras_serializable(package="cxr")
class GeneralizedMeanPooling(layers.Layer):
    """Generalised-mean (GeM) pooling with a learned exponent p: 1 is the average, large p nears
    the maximum, so a small opacity need not be averaged away over the whole map. On the default
    it lowered validation AUC on every seed and p hardly moved from 3 (results.md, PL1): off."""

    def __init__(self, p: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_p = float(p)

    def build(self, input_shape):
        self.p = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.initial_p),
                                 name="p", dtype="float32")

    def get_config(self):
        return {**super().get_config(), "p": self.initial_p}

    def call(self, x):
        ops = keras.ops
        p = ops.maximum(self.p, 1.0)  # below 1 it would no longer be a mean of the map
        x = ops.maximum(ops.cast(x, "float32"), 1e-6)  # fractional powers: positive inputs, float32
        return ops.power(ops.mean(ops.power(x, p), axis=(1, 2)), 1.0 / p)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def _global_pool(x, pooling: str):
    if pooling == "gem":
        return GeneralizedMeanPooling(name="gem")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="gmp")(x)
    return layers.GlobalAveragePooling2D(name="gap")(x)


def _build(image_size: int, cfg: ModelConfig) -> keras.Model:
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = normalization(inputs, cfg)
    x = _residual_body(x, cfg) if cfg.arch == "residual" else _plain_body(x, cfg)
    x = _global_pool(x, cfg.pooling)
    x = layers.Dropout(cfg.dropout, name="head_drop1")(x)
    if cfg.dense_units:  # 0: the pooled features feed the sigmoid directly (a linear head)
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


def _averaged(members: list[keras.Model]):
    """The members as named sub-models on one input: (input, their outputs, the mean)."""
    inputs = keras.Input(shape=members[0].input_shape[1:], name="image")
    outputs = [keras.Model(m.input, m.output, name=f"member{k + 1}")(inputs) for k, m in enumerate(members)]
    return inputs, outputs, layers.Average(name="pneumonia_mean", dtype="float32")(outputs)


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    """One model averaging the members' probabilities: saved, served and explained as one."""
    if len(members) == 1:
        return members[0]
    inputs, _, mean = _averaged(members)
    return keras.Model(inputs, mean, name="cxr_ensemble")


def with_towers(towers: list[keras.Model]) -> keras.Model:
    """Several CNNs trained side by side on the same augmented batches (model.towers), each on
    its own loss so they stay independent as separately trained members do, while the batch's
    augmentation is paid once: the training form, with each tower's output (`member1` ...) and
    their mean (`pneumonia`, validated and kept). `towers_mean` gives the served model."""
    inputs, outputs, mean = _averaged(towers)
    return keras.Model(inputs, {"pneumonia": mean, **{f"member{k + 1}": o for k, o in enumerate(outputs)}},
                       name="cxr_towers")


def towers_mean(model: keras.Model) -> keras.Model:
    """The averaged single-output model inside a towers training model (an ensemble, as
    build_ensemble makes)."""
    return keras.Model(model.input, model.get_layer("pneumonia_mean").output, name="cxr_ensemble")


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """The member CNNs of an ensemble, or the model itself."""
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return members or [model]
