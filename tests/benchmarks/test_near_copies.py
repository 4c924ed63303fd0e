import numpy as np
from scipy.ndimage import gaussian_filter

from benchmarks.near_copies import aligned_correlation, block_mean, copies


def _film(seed: int, size: int = 64) -> np.ndarray:
    # Smooth random structure, like a radiograph at thumbnail scale.
    return gaussian_filter(np.random.default_rng(seed).random((size, size)) * 255, 3)


def test_a_whole_pixel_shift_is_matched_exactly_and_a_distinct_film_is_not():
    a, b = _film(0), _film(1)
    shifted = np.roll(a, (3, -2), axis=(0, 1))
    assert aligned_correlation(shifted, a, max_shift=4) > 0.9999
    # Beyond the search range, the alignment cannot find it.
    assert aligned_correlation(np.roll(a, (7, 0), axis=(0, 1)), a, max_shift=4) < 0.99
    assert aligned_correlation(b, a, max_shift=4) < 0.9


def test_copies_keep_the_film_size_and_block_mean_keeps_the_average():
    film = _film(2, size=128)
    assert {c.shape for c in copies(film).values()} == {(128, 128)}
    thumb = block_mean(film[None], 64)
    assert thumb.shape == (1, 64, 64)
    assert np.isclose(thumb.mean(), film.mean())
