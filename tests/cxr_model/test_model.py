import dataclasses

import keras
import numpy as np

from cxr_model.config import ModelConfig
from cxr_model.model import EqualizeHistogram, build_model


def _films(n: int = 3, size: int = 32, levels: int = 100) -> np.ndarray:
    """Integer films using `levels` grey levels, with a black border as after a shift."""
    x = np.random.default_rng(0).integers(0, levels, (n, size, size, 1)).astype("float32")
    x[:, :4] = 0
    return x


def test_equalize_ignores_any_increasing_exposure_curve():
    x = _films()
    curves = [2 * x + 30, np.round(255 * (x / 99) ** 0.5)]  # brighter + more contrast; gamma
    out = np.asarray(EqualizeHistogram()(x))
    for exposed in curves:
        assert len(np.unique(exposed)) == len(np.unique(x))  # no two grey levels merged
        np.testing.assert_allclose(np.asarray(EqualizeHistogram()(exposed)), out, atol=1e-6)
    # Not the identity: it is the pixel's mid-rank within its own image.
    first = x[0, ..., 0]
    mid_rank = ((first[..., None] > first.ravel()).mean(-1) + (first[..., None] >= first.ravel()).mean(-1)) / 2
    np.testing.assert_allclose(out[0, ..., 0], mid_rank, atol=1e-6)


def test_equalize_works_per_image_not_per_batch():
    x = _films(n=2)
    together = np.asarray(EqualizeHistogram()(np.concatenate([x[:1], 3 * x[1:] + 20])))
    alone = np.asarray(EqualizeHistogram()(x[:1]))
    np.testing.assert_allclose(together[:1], alone, atol=1e-6)


def test_equalizing_model_round_trips_through_a_saved_file(tmp_path):
    cfg = dataclasses.replace(ModelConfig(filters=(8, 16), dense_units=8), normalize="equalize")
    model = build_model(32, cfg, seed=1)
    x = _films(n=4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # The same films under another exposure curve get the same prediction.
    np.testing.assert_allclose(loaded.predict(2 * x + 30, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_equalize_counts_in_float32_under_bfloat16():
    """A 128x128 film has 16,384 pixels: bfloat16 cannot count or sum that high exactly."""
    x = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 1)).astype("float32")
    exact = np.asarray(EqualizeHistogram()(x))
    half = np.asarray(EqualizeHistogram(dtype="mixed_bfloat16")(x)).astype("float32")
    np.testing.assert_allclose(half, exact, atol=4e-3)  # only the output is rounded to bfloat16
