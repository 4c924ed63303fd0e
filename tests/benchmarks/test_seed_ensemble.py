import numpy as np

from benchmarks.seed_ensemble import averages


def test_every_member_and_every_larger_subset_is_averaged_once():
    p = [np.array([0.1, 0.9]), np.array([0.3, 0.5]), np.array([0.8, 0.4])]
    out = averages(p)

    assert sorted(out) == [(0,), (0, 1), (0, 1, 2), (0, 2), (1,), (1, 2), (2,)]
    np.testing.assert_array_equal(out[(1,)], p[1])
    np.testing.assert_allclose(out[(0, 2)], [0.45, 0.65])
    np.testing.assert_allclose(out[(0, 1, 2)], [0.4, 0.6])
