import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxr_model import probes


def _films(n: int = 6, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(40, 220, (n, size, size, 1)).astype(np.uint8)
    return x, np.array([0, 1] * (n // 2))


def test_centre_crop_zooms_in_on_the_middle():
    x = np.zeros((1, 40, 40, 1), dtype=np.uint8)
    x[:, 10:30, 10:30] = 200  # a bright square filling the middle half
    crop = probes.centre_crop(x, 0.5)
    assert crop.shape == x.shape and crop.dtype == np.uint8
    assert (crop[:, 2:-2, 2:-2] > 150).all()  # the square now fills the frame
    taller = probes.centre_crop(x, 0.5, 1.0)  # half the height kept, all the width: stretched
    assert (taller[:, 2:-2, 12:28] > 150).all() and (taller[:, :, :8] < 50).all()
    wider = probes.PROBES["wider_85"][1](x)  # 85 % of the width kept: the square 20 -> 23.5 px wide
    assert (wider[:, 20, 9:31] > 150).all() and (wider[:, 20, :7] < 50).all() and (wider[:, 5:9, 20] < 50).all()


def _squares(n: int = 20, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A bright square per film, PNEUMONIA films' a little taller than wide: a pure aspect cue."""
    x = np.zeros((n, size, size, 1), dtype=np.uint8)
    y = np.array([0, 1] * (n // 2))
    for i, label in enumerate(y):
        half_h = 8 + 2 * label + (i % 5) * 0.2
        x[i, int(20 - half_h):int(20 + half_h), 12:28] = 200
    return x, y


def _height_over_width(v: np.ndarray) -> np.ndarray:
    bright = v[..., 0] > 100
    return bright.any(axis=2).sum(axis=1) / np.maximum(bright.any(axis=1).sum(axis=1), 1)


def test_aspect_jitter_stretches_each_film_its_own_way_and_repeats_per_seed():
    x, _ = _squares()
    a, b = probes.aspect_jittered(x, 0.3, seed=0), probes.aspect_jittered(x, 0.3, seed=1)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert (a == probes.aspect_jittered(x, 0.3, seed=0)).all() and not (a == b).all()
    ratios = _height_over_width(a) / _height_over_width(x)
    assert ratios.min() < 0.95 and ratios.max() > 1.05  # some wider, some taller
    assert (probes.aspect_jittered(x, 0.0, seed=0) == x).all()


def test_aspect_jittered_auc_exposes_a_model_reading_the_squash():
    x, y = _squares()
    assert roc_auc_score(y, _height_over_width(x)) == 1.0
    assert probes.aspect_jittered_auc(_height_over_width, x, y) < 0.9

    def blind(v: np.ndarray) -> np.ndarray:
        return np.where(np.arange(len(v)) % 2 == 1, 0.9, 0.1)

    assert probes.aspect_jittered_auc(blind, x, y) == 1.0


def test_exposure_blur_sharpen_and_corners_change_what_they_say():
    x, _ = _films()
    darker = probes.exposed(x, gamma=1.5)
    assert darker.dtype == np.uint8 and (darker <= x).all() and darker.mean() < x.mean()
    flat = probes.exposed(x, squeeze=0.6)
    assert np.ptp(flat) < np.ptp(x) and abs(float(flat.mean()) - 127.5) < abs(float(x.mean()) - 127.5) + 1
    assert probes.blurred(x, 1.0).std() < x.std() < probes.sharpened(x).std()
    masked = probes.corners_masked(x, share=0.2)
    assert (masked[:, :8, :8] == 0).all() and (masked[:, -8:, -8:] == 0).all()
    assert (masked[:, 8:-8] == x[:, 8:-8]).all()  # the middle band is untouched


def test_a_model_reading_the_corners_shows_up_and_a_blind_one_stays_flat():
    x, y = _films()

    def corner_reader(v: np.ndarray) -> np.ndarray:
        return np.concatenate([v[:, :8, :8], v[:, -8:, -8:]], axis=1).reshape(len(v), -1).mean(1) / 255.0

    def constant(v: np.ndarray) -> np.ndarray:
        return np.where(np.arange(len(v)) % 2 == 1, 0.9, 0.1)

    reader = probes.run_probes(corner_reader, x, y)
    assert set(reader) == {"as_is", *probes.PROBES}
    assert reader["corners_masked"]["normal_ratio"] == 0.0  # its NORMAL score collapses
    assert reader["as_is"]["normal_ratio"] == 1.0
    blind = probes.run_probes(constant, x, y)
    assert all(r["normal_ratio"] == pytest.approx(1.0) and r["auc"] == 1.0 for r in blind.values())


def test_probes_refuse_a_single_class():
    x, _ = _films()
    with pytest.raises(ValueError, match="NORMAL and PNEUMONIA"):
        probes.run_probes(lambda v: np.zeros(len(v)), x, np.zeros(len(x), dtype=int))


def test_tilt_noise_resolution_and_compression_change_what_they_say():
    x = np.zeros((2, 40, 40, 1), dtype=np.uint8)
    x[:, 18:22, :] = 200  # a horizontal bar through the middle
    tilted = probes.rotated(x, 10.0)
    assert tilted.shape == x.shape and tilted.dtype == np.uint8
    assert tilted[:, 19, 20] == pytest.approx(x[:, 19, 20], abs=10)  # the centre stays
    assert (tilted[:, 19, 2] < 100).all() and (tilted[:, 19, 37] < 100).all()  # the ends moved off the row
    films, _ = _films()
    noisy = probes.noisy(films, 10.0)
    assert 8 < float((noisy.astype(float) - films).std()) < 12
    assert (probes.noisy(films, 10.0) == noisy).all()  # a fixed draw: the probe is repeatable
    smooth = np.tile(np.linspace(0, 255, 40, dtype=np.float32), (1, 40, 1))[..., None].astype(np.uint8)
    assert np.abs(probes.downsampled(smooth).astype(int) - smooth).max() <= 8  # a ramp survives
    assert probes.downsampled(films).std() < films.std()  # pixel-level detail does not
    lossy = probes.jpeg_compressed(films, 30)
    assert lossy.shape == films.shape and lossy.dtype == np.uint8
    assert 0 < np.abs(lossy.astype(int) - films).mean() < 60
    assert np.abs(probes.jpeg_compressed(films, 95).astype(int) - films).mean() < np.abs(lossy.astype(int) - films).mean()
