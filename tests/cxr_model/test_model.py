import dataclasses

import keras
import numpy as np
import pytest

from cxr_model.config import ModelConfig
from cxr_model.gradcam import feature_layer
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


def test_gem_pooling_spans_average_to_max_and_learns_its_exponent():
    from cxr_model.model import GeneralizedMeanPooling

    maps = np.random.default_rng(0).uniform(0.0, 2.0, size=(3, 4, 4, 5)).astype("float32")
    at = {}
    for p in (1.0, 3.0, 60.0):
        pool = GeneralizedMeanPooling(p=p)
        at[p] = keras.ops.convert_to_numpy(pool(maps))
        assert at[p].shape == (3, 5)
        assert len(pool.trainable_weights) == 1  # the exponent is learned
    np.testing.assert_allclose(at[1.0], maps.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(at[60.0], maps.max(axis=(1, 2)), rtol=0.05)
    assert np.all(at[1.0] < at[3.0]) and np.all(at[3.0] < at[60.0])
    # An exponent pushed below 1 acts as 1: still a mean of the map.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(GeneralizedMeanPooling(p=0.2)(maps)), at[1.0], rtol=1e-5)


@pytest.mark.parametrize("pooling, layer", [("gem", "gem"), ("max", "gmp"), ("average", "gap")])
def test_pooling_choice_builds_and_round_trips(tmp_path, pooling, layer):
    cfg = ModelConfig(arch="residual", stem_filters=8, filters=(8, 16), dense_units=8, pooling=pooling)
    model = build_model(32, cfg, seed=1)
    assert model.get_layer(layer).output.shape[-1] == 16
    x = grey_films(n=3)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("arch", ["plain", "residual"])
def test_spatial_dropout_and_a_linear_head_are_knobs(arch):
    base = ModelConfig(arch=arch, stem_filters=8, filters=(8, 16, 32), dense_units=8)
    model = build_model(32, base, seed=1)
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.SpatialDropout2D)]
    assert [layer.rate for layer in drops] == [0.1, 0.1]  # after every stage but the first
    stronger = build_model(32, dataclasses.replace(base, spatial_dropout=0.3), seed=1)
    assert [layer.rate for layer in stronger.layers if isinstance(layer, keras.layers.SpatialDropout2D)] == [0.3, 0.3]
    none = build_model(32, dataclasses.replace(base, spatial_dropout=0.0), seed=1)
    assert not any(isinstance(layer, keras.layers.SpatialDropout2D) for layer in none.layers)
    linear = build_model(32, dataclasses.replace(base, dense_units=0), seed=1)
    denses = [layer for layer in linear.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.name for layer in denses] == ["pneumonia"]
    assert denses[0].input.shape[-1] == 32  # the pooled features of the last stage, directly
    assert linear.count_params() < model.count_params()
    x = grey_films(n=2)
    assert linear.predict(x, verbose=0).shape == (2, 1)


@pytest.mark.parametrize("arch", ["plain", "residual"])
def test_squeeze_excite_gates_every_blocks_maps_per_film_and_round_trips(tmp_path, arch):
    base = ModelConfig(arch=arch, stem_filters=16, filters=(8, 16), dense_units=8)
    plain = build_model(32, base, seed=1)
    gated = build_model(32, dataclasses.replace(base, squeeze_excite=2), seed=1)
    scales = [layer for layer in gated.layers if isinstance(layer, keras.layers.Multiply)]
    assert [layer.name for layer in scales] == ["se1_scale", "se2_scale"]  # one gate per block
    assert not any(isinstance(layer, keras.layers.Multiply) for layer in plain.layers)
    # Hidden widths: channels / ratio, never below 4.
    assert [gated.get_layer(f"se{i}_squeeze").units for i in (1, 2)] == [4, 8]
    x = grey_films(n=3)
    gates = keras.Model(gated.input, gated.get_layer("se2_gate").output).predict(x, verbose=0)
    assert gates.shape == (3, 1, 1, 16)
    assert np.all((gates > 0) & (gates < 1))
    assert np.ptp(gates[:, 0, 0, :], axis=0).max() > 0  # the gates differ from film to film
    # Grad-CAM still reads a spatial map, never a gate's 1x1 one.
    assert feature_layer(gated).output.shape[1] > 1
    path = tmp_path / "m.keras"
    gated.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), gated.predict(x, verbose=0), atol=1e-6)
