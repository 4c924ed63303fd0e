"""Could the training blur be cheaper on this CPU without changing the model?

    python -m benchmarks.blur_sum                  # batch and size from params.yaml
    python -m benchmarks.blur_sum --trials 50

The augmenter's Gaussian blur (Keras `RandomGaussianBlur`) is a 3x3 depthwise convolution of
one grey channel. On an AVX2-only host it took 72 of the augmenter's 155 ms per batch (results.md,
"Where the training time goes on an AVX2 host"). The same blur written as a sum of nine shifted,
weighted copies of the film is cheaper there. Replacing it keeps the default's model only if
the sums are bit-identical on every CPU type that trains it; this prints, for Gaussian kernels
drawn as the layer draws them, how many trials match bit for bit and the time of each form.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The 3x3 Gaussian kernel (1D outer product, normalised), shaped for a depthwise conv."""
    g = np.exp(-0.5 * ((np.arange(3) - 1) / sigma) ** 2)
    g /= g.sum()
    return np.outer(g, g).astype(np.float32).reshape(3, 3, 1, 1)


def depthwise_blur(x, kernel):
    """Keras's form: one depthwise convolution, zero padding."""
    import tensorflow as tf

    return tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding="SAME")


def shifted_blur(x, kernel):
    """The same blur as nine weighted shifted copies, summed in the kernel's row-major order."""
    import tensorflow as tf

    h, w = x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    out = 0.0
    for i in range(3):
        for j in range(3):
            out = out + kernel[i, j, 0, 0] * padded[:, i:i + h, j:j + w, :]
    return out


def _ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def compare(batch: int, size: int, trials: int, seed: int = 0, repeats: int = 10) -> dict:
    """Bit-identical trials and ms per batch of each form (graph mode, op determinism on, as
    in training)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(seed)
    identical = 0
    for _ in range(trials):
        x = tf.constant(rng.uniform(0, 255, (batch, size, size, 1)).astype(np.float32))
        kernel = tf.constant(gaussian_kernel(rng.uniform(0.1, 1.2)))
        identical += bool(np.array_equal(depthwise_blur(x, kernel).numpy(), shifted_blur(x, kernel).numpy()))
    depthwise, shifted = tf.function(depthwise_blur), tf.function(shifted_blur)
    return {"identical": identical, "trials": trials,
            "depthwise_ms": _ms(lambda: depthwise(x, kernel), repeats),
            "shifted_ms": _ms(lambda: shifted(x, kernel), repeats)}


def main(argv: list[str] | None = None) -> int:
    from cxr_model.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=None)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args(argv)
    cfg = load_config(args.params)
    r = compare(cfg.train.batch_size, cfg.preprocess.image_size, args.trials)
    print(f"batch of {cfg.train.batch_size} at {cfg.preprocess.image_size} px: bit-identical in "
          f"{r['identical']} of {r['trials']} trials; depthwise {r['depthwise_ms']:.1f} ms, "
          f"shifted sum {r['shifted_ms']:.1f} ms per batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
