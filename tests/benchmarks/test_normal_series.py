import numpy as np
import pytest
from PIL import ImageFilter
from scipy.stats import spearmanr

from benchmarks.normal_series import BANDS, band_shares, series, series_figures
from tests.conftest import synthetic_xray


def test_films_fall_in_their_file_name_series():
    assert series("test/NORMAL/NORMAL2-IM-0105-0001.jpeg") == "NORMAL2"
    assert series("test/NORMAL/IM-0001-0001.jpeg") == "IM"


def test_specificity_is_counted_per_series_and_the_size_correlation_over_normal_films():
    paths = ["a/IM-1-1.jpeg", "a/IM-2-1.jpeg", "a/NORMAL2-IM-3-1.jpeg", "a/NORMAL2-IM-4-1.jpeg",
             "a/NORMAL2-IM-5-1.jpeg", "b/person1_virus_1.jpeg"]
    y = np.array([0, 0, 0, 0, 0, 1])
    p = np.array([0.1, 0.2, 0.9, 0.6, 0.1, 0.3])
    sizes = np.array([7000, 7100, 6000, 6500, 7200, 100])
    f = series_figures(paths, y, p, 0.5, sizes)
    assert f["IM"] == {"films": 2, "specificity": 1.0}
    assert f["NORMAL2"] == {"films": 3, "specificity": pytest.approx(1 / 3)}
    assert f["rho_score_bytes"] == pytest.approx(spearmanr(p[:5], sizes[:5]).statistic)  # NORMAL films only
    assert f["rho_score_bytes"] != pytest.approx(spearmanr(p, sizes).statistic)


def test_a_smoother_film_has_less_of_its_energy_in_the_fine_bands():
    film = synthetic_xray(0, "NORMAL", 224)
    sharp = band_shares(np.asarray(film))
    smooth = band_shares(np.asarray(film.filter(ImageFilter.GaussianBlur(1.5))))
    assert sharp.shape == (len(BANDS),) and 0.9 < sharp.sum() <= 1.0
    assert smooth[-2:].sum() < 0.5 * sharp[-2:].sum() and smooth[0] > sharp[0]
