"""Grad-CAM: where in the film the model looked, as a heatmap over the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from cxr_model.model import ensemble_members, keras
from cxr_model.normalization import NORMALIZATION_LAYERS


def feature_layer(model: keras.Model, min_cells: int = 8) -> keras.layers.Layer:
    """The last layer with a spatial map of at least min_cells x min_cells (finer than the
    final 4x4 map, still deep enough to be semantic); the last spatial layer otherwise."""
    spatial = [layer for layer in model.layers[1:]
               if len(layer.output.shape) == 4 and layer.name not in NORMALIZATION_LAYERS]
    if not spatial:
        raise ValueError("model has no spatial feature map for Grad-CAM")
    fine = [layer for layer in spatial if layer.output.shape[1] >= min_cells]
    return (fine or spatial)[-1]


class GradCam:
    """Heatmaps for a Keras model taking (n, size, size, 1) 0-255 images; for an ensemble,
    the sum of its members' maps (the gradient of the mean output splits evenly over them)."""

    def __init__(self, model: keras.Model):
        members = ensemble_members(model)
        layers = [feature_layer(member) for member in members]
        self.layer_name = layers[0].name
        self._models = [keras.Model(member.inputs, [layer.output, member.outputs[0]])
                        for member, layer in zip(members, layers)]
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        # Graph mode: eager GradientTape through the residual graph was measured to corrupt the
        # heap now and then (TF 2.21, oneDNN); the traced function has been stable.
        self._cam = tf.function(self._compute, input_signature=[spec])

    def _compute(self, x):
        total = None
        for member in self._models:
            with tf.GradientTape() as tape:
                features, output = member(x, training=False)
                score = tf.reduce_sum(output)
            grads = tf.cast(tape.gradient(score, features), tf.float32)  # bfloat16 models too
            features = tf.cast(features, tf.float32)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.reduce_sum(weights * features, axis=-1)
            total = cam if total is None else total + cam
        return tf.nn.relu(total)

    def heatmaps(self, x: np.ndarray) -> np.ndarray:
        """(n, h, w) maps in [0, 1] at the feature-map resolution."""
        cam = self._cam(tf.convert_to_tensor(x, dtype=tf.float32)).numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0).astype(np.float32)


def overlay(gray: np.ndarray, heatmap: np.ndarray, size: int, alpha: float = 0.4) -> Image.Image:
    """The film in gray with the heatmap in a jet colour map on top, long side = size px."""
    import matplotlib

    h, w = gray.shape
    scale = size / max(h, w)
    out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
    base = np.asarray(Image.fromarray(gray).convert("RGB").resize((out_w, out_h), Image.Resampling.BILINEAR),
                      dtype=np.float32)
    heat = Image.fromarray(np.uint8(np.clip(heatmap, 0, 1) * 255)).resize((out_w, out_h), Image.Resampling.BICUBIC)
    colours = matplotlib.colormaps["jet"](np.asarray(heat, dtype=np.float32) / 255.0)[..., :3] * 255.0
    weight = alpha * (np.asarray(heat, dtype=np.float32)[..., None] / 255.0)
    return Image.fromarray(np.uint8((1 - weight) * base + weight * colours))


def save_overlay(gray: np.ndarray, heatmap: np.ndarray, path: Path, size: int, caption: str = "") -> Path:
    """Write the overlay PNG (with a one-line caption strip when given)."""
    img = overlay(gray, heatmap, size)
    if caption:
        from PIL import ImageDraw

        canvas = Image.new("RGB", (img.width, img.height + 18), (0, 0, 0))
        canvas.paste(img, (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), caption, fill=(255, 255, 255))
        img = canvas
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
