import keras
import numpy as np

from benchmarks.adapt_bn import _mix_subset, adapt_batchnorm
from cxr_model.config import ModelConfig
from cxr_model.model import build_ensemble, build_model, ensemble_members
from tests.conftest import grey_films


def _batchnorms(model):
    return [layer for m in ensemble_members(model) for layer in m.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def test_adapted_batchnorm_statistics_are_the_cohorts_own_and_the_original_is_untouched():
    model = build_model(32, ModelConfig(stem_filters=4, filters=(8, 16), dense_units=4), seed=1)
    before = [(bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()) for bn in _batchnorms(model)]
    x = grey_films(n=10, levels=255)
    adapted = adapt_batchnorm(model, x, batch_size=3)  # batches that do not divide the cohort

    for bn, (mean, var) in zip(_batchnorms(model), before):
        np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)
        np.testing.assert_array_equal(bn.moving_variance.numpy(), var)
    for bn in _batchnorms(adapted):
        f = keras.Model(adapted.input, bn.input).predict(x, verbose=0).reshape(-1, bn.input.shape[-1])
        np.testing.assert_allclose(bn.moving_mean.numpy(), f.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), f.var(axis=0), rtol=1e-3, atol=1e-5)
    # A fresh model's statistics are 0 and 1, so adaptation changes what it predicts.
    assert not np.allclose(adapted.predict(x, verbose=0), model.predict(x, verbose=0))


def test_every_ensemble_member_is_adapted():
    cfg = ModelConfig(stem_filters=4, filters=(8,), dense_units=4)
    ensemble = build_ensemble([build_model(32, cfg, seed=s) for s in (1, 2)])
    adapted = adapt_batchnorm(ensemble, grey_films(n=4, levels=255))
    assert len(ensemble_members(adapted)) == 2
    assert all(not np.allclose(bn.moving_variance.numpy(), 1.0) for bn in _batchnorms(adapted))


def test_mix_subset_has_the_asked_share_and_no_repeats():
    y = np.array([1] * 70 + [0] * 30)
    for share in (0.25, 0.9):
        idx = _mix_subset(y, share)
        assert len(set(idx)) == len(idx)
        assert abs(y[idx].mean() - share) < 0.03
