import numpy as np
import pytest

from benchmarks.tta import VARIANTS, averaged, views, validation_figures
from cxr_model.probes import PROBES, centre_crop


def films(n: int = 4, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 1), dtype=np.uint8)


def test_the_aspect_variant_stretches_each_axis_twice_as_the_augmentation_crops():
    x = films()
    out = views(x, "aspect")

    assert len(out) == 5 and all(v.shape == x.shape and v.dtype == np.uint8 for v in out)
    np.testing.assert_array_equal(out[0], x)
    np.testing.assert_array_equal(out[1], centre_crop(x, 0.85, 1.0))
    np.testing.assert_array_equal(out[4], centre_crop(x, 1.0, 0.7))
    # Taller views keep every column's content at the edges; wider views every row's.
    assert not np.array_equal(out[1], out[3])


@pytest.mark.parametrize("variant, n", [("none", 1), ("zoom", 3), ("shift", 5), ("zoom+shift", 7), ("aspect", 5)])
def test_every_variant_has_its_number_of_views(variant, n):
    assert variant in VARIANTS
    assert len(views(films(), variant)) == n


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown TTA variant 'flip'"):
        views(films(), "flip")


def test_the_averaged_score_is_the_mean_over_the_views():
    x = films()

    def brightness(v: np.ndarray) -> np.ndarray:
        return v.reshape(len(v), -1).mean(axis=1) / 255.0

    expected = np.mean([brightness(v) for v in views(x, "aspect")], axis=0)
    np.testing.assert_allclose(averaged(brightness, "aspect")(x), expected)
    np.testing.assert_allclose(averaged(brightness, "none")(x), brightness(x))


def test_blind_figures_read_validation_through_the_given_predict():
    x = films(8)
    y = np.array([0, 1] * 4)

    def label_reader(v: np.ndarray) -> np.ndarray:  # a perfect model whose score moves with brightness
        return np.clip(0.2 + 0.6 * (np.arange(len(v)) % 2) + v.mean(axis=(1, 2, 3)) / 2550.0, 0, 1)

    f = validation_figures(label_reader, x, y)
    assert f["auc"] == 1.0 and f["jittered"] == 1.0
    assert f["probe"] in PROBES and f["ratio"] > 0
