import dataclasses

import keras
import numpy as np
import pytest

from cxr_model.config import ModelConfig
from cxr_model.model import build_model
from tests.conftest import grey_films


@pytest.mark.parametrize("normalize", ["equalize", "clahe"])
def test_equalizing_model_round_trips_through_a_saved_file(tmp_path, normalize):
    cfg = dataclasses.replace(ModelConfig(filters=(8, 16), dense_units=8), normalize=normalize, clahe_tiles=4)
    model = build_model(32, cfg, seed=1)
    x = grey_films(n=4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # The same films under another exposure curve get the same prediction.
    np.testing.assert_allclose(loaded.predict(2 * x + 30, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("arch", ["plain", "residual"])
def test_separable_model_keeps_a_dense_first_conv_and_round_trips(tmp_path, arch):
    base = ModelConfig(arch=arch, stem_filters=8, filters=(8, 16, 32), dense_units=8, convs_deep=2)
    dense = build_model(32, base, seed=1)
    separable = build_model(32, dataclasses.replace(base, separable=True), seed=1)

    def convs(model):
        return [(type(layer).__name__, layer.kernel_size) for layer in model.layers
                if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D))]

    kinds = convs(separable)
    assert len(kinds) == len(convs(dense))  # the same blocks, only the 3x3 convolutions change
    # The first conv reads one grey channel and stays dense; so do 1x1 projections.
    assert kinds[0] == ("Conv2D", (3, 3))
    assert all(kind == "SeparableConv2D" for kind, size in kinds[1:] if size == (3, 3))
    assert any(kind == "SeparableConv2D" for kind, _ in kinds[1:])
    assert all(size == (1, 1) for kind, size in kinds[1:] if kind == "Conv2D")
    assert all(kind == "Conv2D" for kind, _ in convs(dense))
    assert separable.count_params() < dense.count_params() / 2
    x = grey_films(n=2)
    path = tmp_path / "m.keras"
    separable.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), separable.predict(x, verbose=0), atol=1e-6)


def test_a_stride_4_stem_reads_twice_the_side_at_the_same_body_cost():
    base = ModelConfig(arch="residual", stem_filters=8, filters=(8, 16, 32), dense_units=8)
    small = build_model(32, base, seed=1)
    large = build_model(64, dataclasses.replace(base, stem_stride=4), seed=1)

    def maps(model):
        return [tuple(layer.output.shape[1:]) for layer in model.layers if layer.name.startswith("add")]

    # Every residual stage sees the same feature-map sizes, so the body costs the same.
    assert maps(large) == maps(small) == [(8, 8, 8), (4, 4, 16), (2, 2, 32)]
    assert large.get_layer("conv_stem").kernel_size == (4, 4)
    assert large.get_layer("conv_stem").strides == (4, 4)
    # Only the stem's weights differ (a 4x4 kernel instead of 3x3 over one grey channel).
    assert large.count_params() - small.count_params() == 8 * (16 - 9)
    assert large.predict(grey_films(n=2, size=64), verbose=0).shape == (2, 1)
