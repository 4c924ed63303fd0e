import numpy as np

from benchmarks.blur_sum import compare, depthwise_blur, gaussian_kernel, main, shifted_blur


def test_gaussian_kernel_sums_to_one_and_narrows_with_sigma():
    wide, narrow = gaussian_kernel(1.2), gaussian_kernel(0.1)
    assert wide.shape == (3, 3, 1, 1)
    np.testing.assert_allclose([wide.sum(), narrow.sum()], 1.0, rtol=1e-6)
    assert narrow[1, 1, 0, 0] > 0.99 > wide[1, 1, 0, 0]


def test_shifted_sum_blurs_as_the_depthwise_convolution_does():
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)).astype(np.float32)
    kernel = gaussian_kernel(0.8)
    a, b = np.asarray(depthwise_blur(x, kernel)), np.asarray(shifted_blur(x, kernel))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-4)  # the same blur (bit-identity is what it measures)
    assert np.abs(a - x).max() > 1  # and it is a blur, not the film itself
    # Zero padding: a corner pixel keeps only the kernel's in-image weights.
    ones = np.ones((1, 4, 4, 1), np.float32)
    np.testing.assert_allclose(np.asarray(shifted_blur(ones, kernel))[0, 0, 0, 0], kernel[1:, 1:].sum(), rtol=1e-6)


def test_report_counts_trials_and_times_both_forms(capsys):
    r = compare(batch=2, size=16, trials=3, repeats=2)
    assert r["trials"] == 3 and 0 <= r["identical"] <= 3
    assert r["depthwise_ms"] > 0 and r["shifted_ms"] > 0
    assert main(["--trials", "2"]) == 0
    assert "of 2 trials" in capsys.readouterr().out
