"""Does the augmenter's cheaper blur keep the model on this CPU, and what does it save?

    python -m benchmarks.blur_sum                  # batch and size from params.yaml

The augmenter's Gaussian blur is Keras's `RandomGaussianBlur`, a 3x3 depthwise convolution of
one grey channel. On an AVX2-only host it took 72 of the augmenter's 155 ms per batch (results.md,
"Where the training time goes on an AVX2 host"). `ShiftedSumBlur` draws the same random blurs
and computes each as nine weighted shifted copies of the film; the augmenter uses it only where
`shifted_sum_blur_is_exact` finds it bit-identical to Keras's layer (the model is then the
same). This prints that check and the time per batch of both layers, run as training runs
them: in a tf.data map, one batch after another.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def time_layers(batch: int, size: int, batches: int = 6, seed: int = 0) -> dict[str, float]:
    """ms per batch of Keras's blur and of ShiftedSumBlur (every film blurred) in a tf.data map."""
    from keras import layers

    from cxr_model.augmentation import ShiftedSumBlur, gaussian_blur, through_pipeline

    films = np.random.default_rng(seed).uniform(0, 255, (batch * batches, size, size, 1)).astype(np.float32)
    times = {}
    for name, kind in (("keras", layers.RandomGaussianBlur), ("shifted_sum", ShiftedSumBlur)):
        data = through_pipeline(gaussian_blur(kind, 1.0, seed), films, batch)
        for _ in data.take(1):  # trace first
            pass
        start = time.perf_counter()
        for _ in data:
            pass
        times[name] = (time.perf_counter() - start) / batches * 1000
    return times


def main(argv: list[str] | None = None) -> int:
    from cxr_model.augmentation import shifted_sum_blur_is_exact
    from cxr_model.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=None)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args(argv)
    cfg = load_config(args.params)
    exact = shifted_sum_blur_is_exact()
    ms = time_layers(cfg.train.batch_size, cfg.preprocess.image_size, args.batches)
    print(f"shifted-sum blur bit-identical to Keras's on this CPU: {'yes (the augmenter uses it)' if exact else 'no (the augmenter keeps Keras blur)'}")
    print(f"batch of {cfg.train.batch_size} at {cfg.preprocess.image_size} px, every film blurred: "
          f"Keras {ms['keras']:.1f} ms, shifted sum {ms['shifted_sum']:.1f} ms per batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
