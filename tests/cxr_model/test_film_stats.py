import numpy as np
import pandas as pd
import pytest
from PIL import ImageFilter
from scipy.stats import ks_2samp

from cxr_model import film_stats
from tests.conftest import synthetic_xray


def _films(n: int, blur: float = 0.0, seed: int = 0) -> np.ndarray:
    out = []
    for i in range(n):
        img = synthetic_xray(seed + i, "NORMAL", 96)
        if blur:
            img = img.filter(ImageFilter.GaussianBlur(blur))
        out.append(np.asarray(img.convert("L")))
    return np.stack(out)


def test_fine_detail_falls_with_blur_and_rises_with_noise():
    films = _films(6)
    rng = np.random.default_rng(0)
    noisy = np.clip(films + rng.normal(0, 25, films.shape), 0, 255).astype(np.uint8)
    sharp, blurred, grainy = (film_stats.fine_detail(f) for f in (films, _films(6, blur=1.5), noisy))
    assert (blurred < sharp).all() and (grainy > sharp).all()
    assert ((sharp > 0) & (sharp < 1)).all()
    assert film_stats.fine_detail(np.full((2, 32, 32), 128, np.uint8)).tolist() == [0.0, 0.0]
    # Chunking does not change the figures.
    np.testing.assert_allclose(film_stats.fine_detail(films, chunk=4), sharp)
    # A batch whose films were all refused has no statistics, and says so without failing.
    assert film_stats.film_statistics(np.zeros((0, 32, 32), np.uint8)).empty


def test_the_ks_distance_from_percentiles_matches_the_two_sample_statistic():
    rng = np.random.default_rng(1)
    training = rng.normal(0.0, 1.0, 20_000)
    pct = np.percentile(training, film_stats.PERCENTILES)
    for shift in (0.0, 0.3, 1.0):
        cohort = np.sort(rng.normal(shift, 1.0, 400))
        assert film_stats.ks_distance(cohort, pct) == pytest.approx(ks_2samp(cohort, training).statistic, abs=0.02)
    # A repeated value (every training film square, say) is a step, not a slope.
    assert film_stats.ks_distance(np.ones(50), np.ones(101)) == 0.0
    assert film_stats.ks_distance(np.full(50, 2.0), np.ones(101)) == 1.0


def _stats(detail: np.ndarray, brightness: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"brightness": brightness, "contrast": np.full(len(detail), 50.0), "detail": detail})


def test_a_cohort_whose_normal_films_are_smoother_is_flagged_for_them_alone():
    rng = np.random.default_rng(2)
    y_train = np.repeat([0, 1], 2000)
    train = _stats(np.where(y_train == 0, rng.normal(0.035, 0.008, 4000), rng.normal(0.026, 0.008, 4000)),
                   rng.normal(122, 12, 4000))
    ref = film_stats.reference(train, y_train)
    assert ref["films"] == {"all": 4000, "NORMAL": 2000, "PNEUMONIA": 2000}
    assert all(len(v) == 101 for per_group in ref["percentiles"].values() for v in per_group.values())

    y = np.repeat([0, 1], 300)
    cohort = _stats(np.where(y == 0, rng.normal(0.030, 0.008, 600), rng.normal(0.026, 0.008, 600)),
                    rng.normal(122, 12, 600))
    shift = film_stats.compare(ref, cohort, y).set_index(["statistic", "group"])
    assert shift.loc[("detail", "NORMAL"), "shifted"] and shift.loc[("detail", "NORMAL"), "ks"] > 0.2
    assert not shift.loc[("detail", "PNEUMONIA"), "shifted"] and not shift.loc[("brightness", "NORMAL"), "shifted"]
    assert shift.loc[("detail", "NORMAL"), "cohort_median"] == pytest.approx(0.030, abs=0.002)
    row = shift.loc[("detail", "NORMAL")]
    line = film_stats.describe(pd.Series({**row.to_dict(), "statistic": "detail", "group": "NORMAL"}))
    assert line.startswith(f"detail of NORMAL films: cohort {row['cohort_median']:.3f}")
    assert f"vs training {row['training_median']:.3f}" in line and f"distance {row['ks']:.2f}" in line
    # Without labels, the cohort is compared as a whole.
    assert set(film_stats.compare(ref, cohort)["group"]) == {"all"}


def test_the_training_reference_takes_the_training_split_only():
    table = pd.DataFrame({"path": list("abcd"), "split": ["train", "train", "val", "test"],
                          "label": ["NORMAL", "PNEUMONIA", "NORMAL", "NORMAL"],
                          "brightness": [100.0, 110.0, 250.0, 250.0], "contrast": [50.0] * 4,
                          "detail": [0.03] * 4})
    ref = film_stats.training_reference(table)
    assert ref["films"] == {"all": 2, "NORMAL": 1, "PNEUMONIA": 1}
    assert max(ref["percentiles"]["brightness"]["all"]) == 110.0


def test_assess_prints_each_differing_statistic_or_that_none_differs(tmp_path, capsys):
    from cxr_model.cli import _print_film_shift

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 500)
    ref = film_stats.reference(_stats(rng.normal(0.03, 0.008, 1000), rng.normal(122, 12, 1000)), y)
    alike = film_stats.compare(ref, _stats(rng.normal(0.03, 0.008, 1000), rng.normal(122, 12, 1000)), y)
    _print_film_shift(alike, tmp_path, "the figures above")
    printed = capsys.readouterr().out
    top = alike[alike["group"] != "all"].sort_values("ks").iloc[-1]
    assert f"films like the training films in brightness, contrast and fine detail (largest " \
           f"Kolmogorov-Smirnov distance {top['ks']:.2f}: {top['statistic']} of {top['group']} films)" in printed
    darker = film_stats.compare(ref, _stats(rng.normal(0.03, 0.008, 1000), rng.normal(100, 12, 1000)), y)
    _print_film_shift(darker, tmp_path, "the figures above")
    printed = capsys.readouterr().out
    assert "films unlike the training films" in printed
    assert "    brightness of NORMAL films: cohort " in printed and "    brightness of PNEUMONIA films" in printed
    assert "detail of" not in printed and "of all films" not in printed
    _print_film_shift(None, tmp_path, "the figures above")
    assert "carries no training-film statistics" in capsys.readouterr().out
    few = film_stats.compare(ref, _stats(rng.normal(0.01, 0.008, 19), rng.normal(60, 12, 19)))
    _print_film_shift(few, tmp_path, "these scores")
    assert capsys.readouterr().out.strip() == "19 film(s) are too few to compare with the model's training films " \
        f"(at least {film_stats.MIN_FILMS})"


def test_an_unlabelled_batch_is_set_against_the_training_classes_mixed_as_it_was_called():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(4)
    y_train = np.repeat([0, 1], [1300, 3700])  # the training split's mix: about three in four PNEUMONIA
    detail = lambda y: np.where(y == 0, rng.normal(0.035, 0.006, len(y)), rng.normal(0.024, 0.006, len(y)))  # noqa: E731
    ref = film_stats.reference(_stats(detail(y_train), rng.normal(122, 12, len(y_train))), y_train)
    y = np.repeat([0, 1], 400)  # a batch of half NORMAL films, each class as in training
    batch = _stats(detail(y), rng.normal(122, 12, len(y)))
    pooled = film_stats.compare(ref, batch).set_index("statistic")
    mixed = film_stats.compare(ref, batch, called=y == 1).set_index("statistic")
    # Set against the training films as they came, the batch's mix alone looks like a shift in detail;
    # against the classes mixed as the batch was called, it does not.
    assert pooled.loc["detail", "shifted"] and pooled.loc["detail", "training_pneumonia_share"] == pytest.approx(0.74)
    assert not mixed["shifted"].any() and mixed.loc["detail", "training_pneumonia_share"] == 0.5
    # The mixed reference is the mixture: its distance is the two-sample one against a half-and-half sample,
    # and its median lies between the classes'.
    half = np.concatenate([rng.normal(0.035, 0.006, 3000), rng.normal(0.024, 0.006, 3000)])
    assert mixed.loc["detail", "ks"] == pytest.approx(ks_2samp(batch["detail"], half).statistic, abs=0.02)
    assert mixed.loc["detail", "training_median"] == pytest.approx(np.median(half), abs=0.001)
    line = film_stats.describe(mixed.reset_index().set_index("statistic", drop=False).loc["detail"])
    assert line.startswith("detail of all films: cohort") and "vs training (50% PNEUMONIA) " in line
    # Softer films of both classes differ from the training films whatever the mix.
    softer = film_stats.compare(ref, batch.assign(detail=batch["detail"] * 0.7), called=y == 1).set_index("statistic")
    assert softer.loc["detail", "shifted"] and not softer.loc["brightness", "shifted"]
