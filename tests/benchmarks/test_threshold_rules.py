import numpy as np

from benchmarks.threshold_rules import held


def test_mean_and_worst_are_taken_over_the_shifted_scorings_at_the_one_threshold():
    y = np.array([0, 0, 1, 1])
    shifted = [np.array([0.1, 0.2, 0.8, 0.9]),   # all right at 0.5
               np.array([0.6, 0.2, 0.4, 0.9])]   # one NORMAL over, one PNEUMONIA under
    out = held(y, shifted, 0.5)
    assert out == {"sens_mean": 0.75, "sens_worst": 0.5, "spec_mean": 0.75, "spec_worst": 0.5}
    assert held(y, shifted, 0.05)["spec_worst"] == 0.0  # everything called PNEUMONIA
