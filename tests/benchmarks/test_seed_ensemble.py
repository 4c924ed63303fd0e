import numpy as np

from benchmarks.seed_ensemble import averages


def test_every_member_and_every_larger_subset_is_averaged_once():
    p = [np.array([0.1, 0.9]), np.array([0.3, 0.5]), np.array([0.8, 0.4])]
    out = averages(p)

    assert sorted(out) == [(0,), (0, 1), (0, 1, 2), (0, 2), (1,), (1, 2), (2,)]
    np.testing.assert_array_equal(out[(1,)], p[1])
    np.testing.assert_allclose(out[(0, 2)], [0.45, 0.65])
    np.testing.assert_allclose(out[(0, 1, 2)], [0.4, 0.6])


def test_a_subsets_jittered_auc_is_the_mean_over_views_of_its_averaged_scores():
    from sklearn.metrics import roc_auc_score

    from benchmarks.seed_ensemble import jittered_aucs

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    views = [[rng.random(40) + 0.3 * y for _ in range(3)] for _ in range(2)]  # two models, three views
    out = jittered_aucs(y, views)
    assert sorted(out) == [(0,), (0, 1), (1,)]
    assert out[(1,)] == np.mean([roc_auc_score(y, v) for v in views[1]])
    assert out[(0, 1)] == np.mean([roc_auc_score(y, (a + b) / 2) for a, b in zip(*views)])


def test_size_means_average_each_column_over_the_subsets_of_one_size():
    from benchmarks.seed_ensemble import COLUMNS, size_means

    rows = {s: {c: float(sum(s)) for c in COLUMNS} for s in [(0,), (1,), (2,), (0, 1), (0, 2)]}
    means = size_means(rows)
    assert sorted(means) == [1, 2]
    assert means[1]["jittered"] == 1.0 and means[2]["specificity"] == 1.5  # (0 + 1 + 0 + 2) / 2
