"""The model's first layers: raw 0-255 pixels to the scale the CNN reads, inside the saved model."""

from __future__ import annotations

import keras
from keras import layers

from cxr_model.config import ModelConfig

# Names of the input-normalisation layers: pixel maps, not features (Grad-CAM skips them).
NORMALIZATION_LAYERS = ("rescale", "standardize", "equalize", "clahe")


@keras.saving.register_keras_serializable(package="cxr")
class PerImageStandardize(layers.Layer):
    """Zero mean, unit spread per image: removes exposure differences between scanners."""

    def call(self, x):
        mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = keras.ops.std(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / (std + 1e-3)


@keras.saving.register_keras_serializable(package="cxr")
class EqualizeHistogram(layers.Layer):
    """Each pixel becomes its intensity rank within its own image (0-1), so one film under any
    scanner's increasing exposure curve (gamma, contrast, brightness) gives the same input."""

    levels = 256

    def call(self, x):
        import tensorflow as tf

        shape = tf.shape(x)
        n = shape[0]
        flat = tf.reshape(tf.cast(x, tf.float32), (n, -1))  # counts up to 16k: never in bfloat16
        level = tf.cast(tf.clip_by_value(tf.floor(flat), 0, self.levels - 1), tf.int32)
        # One histogram per image in a single segment sum (16x faster here than sorting).
        counts = tf.math.unsorted_segment_sum(
            tf.ones_like(flat), level + self.levels * tf.range(n)[:, None], n * self.levels)
        counts = tf.reshape(counts, (n, self.levels))
        # Mid-rank of each level among its image's pixels: a flat region shares one value.
        mid_rank = (tf.cumsum(counts, axis=1) - counts / 2) / tf.cast(tf.shape(flat)[1], tf.float32)
        return tf.cast(tf.reshape(tf.gather(mid_rank, level, batch_dims=1), shape), x.dtype)


def _tile_axis(size, tiles: int):
    """Per pixel along one axis: its tile, the two nearest tile centres and the weight of the second."""
    import tensorflow as tf

    t = tf.cast(tiles, tf.float32)
    centre_pos = (tf.cast(tf.range(size), tf.float32) + 0.5) * t / tf.cast(size, tf.float32) - 0.5
    own = tf.minimum(tf.cast(tf.floor((centre_pos + 0.5)), tf.int32), tiles - 1)
    low = tf.clip_by_value(tf.cast(tf.floor(centre_pos), tf.int32), 0, tiles - 1)
    high = tf.minimum(low + 1, tiles - 1)
    weight = tf.clip_by_value(centre_pos - tf.cast(low, tf.float32), 0.0, 1.0)
    return own, low, high, weight


@keras.saving.register_keras_serializable(package="cxr")
class LocalEqualize(layers.Layer):
    """Contrast-limited adaptive histogram equalisation (CLAHE) of 0-1 images: each pixel
    becomes its rank within its own region of a tiles x tiles grid, blended between the nearest
    regions, with each grey range's gain capped at `clip` times the even share. Scanners'
    local-contrast processing (edge enhancement, smoothing, lower resolution) then moves the
    input less than it moves raw pixels."""

    bins = 64

    def __init__(self, tiles: int = 8, clip: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.tiles, self.clip = int(tiles), float(clip)

    def get_config(self):
        return {**super().get_config(), "tiles": self.tiles, "clip": self.clip}

    def call(self, x):
        import tensorflow as tf

        g, n_bins = self.tiles, self.bins
        img = tf.cast(x, tf.float32)[..., 0]  # counts: never in bfloat16
        n, h, w = tf.shape(img)[0], tf.shape(img)[1], tf.shape(img)[2]
        pos = tf.clip_by_value(img, 0.0, 1.0) * (n_bins - 1e-3)  # continuous bin coordinate
        level = tf.cast(tf.floor(pos), tf.int32)
        within = pos - tf.cast(level, tf.float32)
        row_tile, row_low, row_high, row_w = _tile_axis(h, g)
        col_tile, col_low, col_high, col_w = _tile_axis(w, g)
        # One histogram per image and region in a single segment sum.
        tile = row_tile[:, None] * g + col_tile[None, :]
        segment = (tf.range(n)[:, None, None] * g * g + tile[None]) * n_bins + level
        counts = tf.math.unsorted_segment_sum(tf.ones_like(img), segment, n * g * g * n_bins)
        counts = tf.reshape(counts, (n, g * g, n_bins))
        total = tf.reduce_sum(counts, axis=-1, keepdims=True)
        # Cap each grey range's share, and spread what was cut evenly over all of them.
        clipped = tf.minimum(counts, self.clip * total / n_bins)
        clipped += (total - tf.reduce_sum(clipped, axis=-1, keepdims=True)) / n_bins
        share = clipped / total
        below = tf.reshape(tf.cumsum(share, axis=-1, exclusive=True), (n, -1))
        share = tf.reshape(share, (n, -1))
        within = tf.reshape(within, (n, -1))

        def mapped(rows, cols):
            """Each pixel through the equalising curve of region (rows, cols)."""
            index = tf.reshape((rows[:, None] * g + cols[None, :])[None] * n_bins + level, (n, -1))
            value = tf.gather(below, index, batch_dims=1) + within * tf.gather(share, index, batch_dims=1)
            return tf.reshape(value, (n, h, w))

        wy, wx = row_w[None, :, None], col_w[None, None, :]
        out = ((1 - wy) * ((1 - wx) * mapped(row_low, col_low) + wx * mapped(row_low, col_high))
               + wy * ((1 - wx) * mapped(row_high, col_low) + wx * mapped(row_high, col_high)))
        return tf.cast(out[..., None], x.dtype)


def normalization(inputs, cfg: ModelConfig):
    """The model's input normalisation, named so Grad-CAM can skip it."""
    if cfg.normalize == "per_image":
        return PerImageStandardize(name="standardize")(inputs)
    if cfg.normalize == "equalize":
        return EqualizeHistogram(name="equalize")(inputs)
    if cfg.normalize == "clahe":
        # Globally first, so any increasing exposure curve still gives the same input.
        x = EqualizeHistogram(name="equalize")(inputs)
        return LocalEqualize(cfg.clahe_tiles, cfg.clahe_clip, name="clahe")(x)
    return layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
