import numpy as np
import pytest

from cxr_model.normalization import EqualizeHistogram, LocalEqualize
from tests.conftest import grey_films


def test_equalize_ignores_any_increasing_exposure_curve():
    x = grey_films()
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
    x = grey_films(n=2)
    together = np.asarray(EqualizeHistogram()(np.concatenate([x[:1], 3 * x[1:] + 20])))
    alone = np.asarray(EqualizeHistogram()(x[:1]))
    np.testing.assert_allclose(together[:1], alone, atol=1e-6)


def test_equalize_counts_in_float32_under_bfloat16():
    """A 128x128 film has 16,384 pixels: bfloat16 cannot count or sum that high exactly."""
    x = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 1)).astype("float32")
    exact = np.asarray(EqualizeHistogram()(x))
    half = np.asarray(EqualizeHistogram(dtype="mixed_bfloat16")(x)).astype("float32")
    np.testing.assert_allclose(half, exact, atol=4e-3)  # only the output is rounded to bfloat16


def _two_halves(size: int = 64) -> np.ndarray:
    """A dark left half and a bright right half, each with faint texture (0-1 scale)."""
    rng = np.random.default_rng(1)
    x = np.empty((1, size, size, 1), "float32")
    x[:, :, : size // 2] = rng.uniform(0.05, 0.15, (1, size, size // 2, 1))
    x[:, :, size // 2:] = rng.uniform(0.85, 0.95, (1, size, size // 2, 1))
    return x


def test_clahe_stretches_faint_texture_within_each_region():
    x = _two_halves()
    out = np.asarray(LocalEqualize(tiles=4, clip=40.0)(x))[0, ..., 0]
    # Columns 0-23 blend only regions lying wholly in the dark half (centres at 8 and 24 px),
    # 40-63 only bright ones: each spreads its 0.1-wide grey range over most of 0-1.
    for part in (out[:, :24], out[:, 40:]):
        assert part.max() - part.min() > 0.8
    # Global equalisation gives each half only its own half of the range.
    glob = np.asarray(EqualizeHistogram()(255 * x))[0, ..., 0]
    assert glob[:, :24].max() - glob[:, :24].min() < 0.55
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_clahe_clip_of_one_leaves_the_image_nearly_as_it_is_and_larger_clips_add_gain():
    rng = np.random.default_rng(2)
    flat = (0.5 + rng.uniform(-0.01, 0.01, (2, 32, 32, 1))).astype("float32")
    np.testing.assert_allclose(np.asarray(LocalEqualize(tiles=4, clip=1.0)(flat)), flat, atol=0.02)
    spreads = [np.ptp(np.asarray(LocalEqualize(tiles=4, clip=clip)(flat))) for clip in (1.0, 2.0, 4.0, 40.0)]
    assert spreads == sorted(spreads) and spreads[0] < 0.05 and spreads[-1] > 0.6  # input: 0.02


def test_clahe_is_local_a_change_in_one_corner_stays_near_it():
    x = _two_halves()
    changed = x.copy()
    changed[:, :16, :16] = 1.0 - changed[:, :16, :16]  # only the top-left region (of 4x4)
    a = np.asarray(LocalEqualize(tiles=4)(x))[0, ..., 0]
    b = np.asarray(LocalEqualize(tiles=4)(changed))[0, ..., 0]
    assert not np.allclose(a[:16, :16], b[:16, :16])
    # Pixels at or past the second region's centre (24 px) never use the first region's curve.
    np.testing.assert_allclose(a[24:, :], b[24:, :], atol=1e-6)
    np.testing.assert_allclose(a[:, 24:], b[:, 24:], atol=1e-6)


def test_clahe_is_smooth_across_region_borders():
    """Blending neighbouring regions' curves leaves no seams: a smooth ramp stays smooth (each
    region alone would stretch its own slice of the ramp, jumping back at every border)."""
    ramp = np.tile(np.linspace(0.2, 0.8, 64, dtype="float32"), (64, 1))[None, ..., None]
    out = np.asarray(LocalEqualize(tiles=4, clip=3.0)(ramp))[0, 32, :, 0]
    assert np.abs(np.diff(out)).max() < 0.05  # input steps are 0.0095
    assert out[-1] - out[0] > 0.5  # and it is not flattened away


@pytest.mark.parametrize("size", [30, 33])
def test_clahe_handles_sizes_the_grid_does_not_divide(size):
    x = np.random.default_rng(3).uniform(0, 1, (2, size, size, 1)).astype("float32")
    out = np.asarray(LocalEqualize(tiles=4)(x))
    assert out.shape == x.shape and 0.0 <= out.min() and out.max() <= 1.0


def test_clahe_counts_in_float32_under_bfloat16():
    x = np.random.default_rng(4).uniform(0, 1, (2, 128, 128, 1)).astype("float32")
    exact = np.asarray(LocalEqualize()(x))
    half = np.asarray(LocalEqualize(dtype="mixed_bfloat16")(x)).astype("float32")
    # Input and output are rounded to bfloat16; the counts are not.
    assert np.abs(half - exact).max() < 0.03 and np.abs(half - exact).mean() < 0.005
