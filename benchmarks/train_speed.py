"""Training and inference speed of the configured CNN on random pixels (no data needed).

    python -m benchmarks.train_speed                                  # params.yaml as is
    python -m benchmarks.train_speed --precision float32 mixed_bfloat16 --size 128 160
    python -m benchmarks.train_speed --pipeline --epochs 6           # the real input pipeline
    python -m benchmarks.train_speed --augmenter --set train.augment.fused=true  # per layer

Prints training images/second (augmentation excluded, XLA as configured) and inference
images/second for every combination, so precision and resolution can be weighed against
the time budget before a full run. With --pipeline it instead trains through the project's
own trainer (augmentation, validation, checkpoints; random pixels) and prints every epoch's
seconds: stalls between epochs show there and not in the steady-state figure. With
--augmenter it times the training augmentation alone, whole and layer by layer, on one batch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def measure(cfg, size: int, precision: str, steps: int) -> tuple[float, float]:
    """(train, inference) images/second for one image size and precision."""
    import tensorflow as tf

    from cxr_model.model import build_model, keras
    from cxr_model.training import fixed_pipeline, make_optimizer

    tc = cfg.train
    model = build_model(size, cfg.model, tc.seed, precision)
    model.compile(optimizer=make_optimizer(tc, steps), loss=keras.losses.BinaryCrossentropy(),
                  jit_compile=tc.jit_compile)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (tc.batch_size * steps, size, size, 1)).astype(np.float32)
    y = rng.integers(0, 2, len(x)).astype(np.float32)
    batches = (tf.data.Dataset.from_tensor_slices((x, y)).batch(tc.batch_size).cache().prefetch(2)
               .with_options(fixed_pipeline()))  # as the trainer: no stall between epochs
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    # The first epoch traces and compiles; the last is the steady state.
    model.fit(batches, epochs=3, verbose=0, shuffle=False, callbacks=[Timer()])
    train = len(x) / times[-1]
    model.predict(x[:256], batch_size=256, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=256, verbose=0)
    return train, len(x) / (time.perf_counter() - start)


def measure_pipeline(cfg, images: int, epochs: int) -> list[float]:
    """Seconds of every epoch of training.fit on random images, at the configured size."""
    import tempfile
    from pathlib import Path

    from cxr_model.config import with_overrides
    from cxr_model.preprocess import Arrays
    from cxr_model.training import fit

    cfg = with_overrides(cfg, {"train.epochs": epochs, "train.early_stopping_start": epochs,
                               "model.ensemble": 1})
    size, rng = cfg.preprocess.image_size, np.random.default_rng(0)

    def arrays(n: int) -> Arrays:
        x = rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)
        return Arrays(x, (rng.random(n) < 0.74).astype(np.int64), [])

    with tempfile.TemporaryDirectory() as tmp:
        result = fit(arrays(images), arrays(max(64, images // 6)), cfg, Path(tmp) / "model.keras")
    return result.history["seconds"].tolist()


def measure_augmenter(cfg, repeats: int = 30) -> list[tuple[str, float]]:
    """Milliseconds per training batch for the whole augmenter, then for each of its layers."""
    import tensorflow as tf

    from cxr_model.augmentation import build_augmenter

    size, batch = cfg.preprocess.image_size, cfg.train.batch_size
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 1)).astype(np.float32))
    augment = build_augmenter(cfg.train.augment, cfg.train.seed)

    def timed(step) -> float:
        call = tf.function(lambda v: step(v, training=True))
        call(x).numpy()  # trace
        start = time.perf_counter()
        for _ in range(repeats):
            call(x).numpy()
        return (time.perf_counter() - start) / repeats * 1000

    return [("whole augmenter", timed(augment))] + [(layer.name, timed(layer)) for layer in augment.layers]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--precision", nargs="+", help="float32 and/or mixed_bfloat16 (default: params)")
    parser.add_argument("--size", type=int, nargs="+", help="image sizes (default: params)")
    parser.add_argument("--steps", type=int, default=40, help="training batches timed per combination")
    parser.add_argument("--pipeline", action="store_true",
                        help="time every epoch of the real trainer instead (augmentation included)")
    parser.add_argument("--images", type=int, default=2000, help="--pipeline: training images")
    parser.add_argument("--epochs", type=int, default=6, help="--pipeline: epochs")
    parser.add_argument("--augmenter", action="store_true", help="time the augmentation alone, per layer")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params.yaml key (value parsed as YAML)")
    args = parser.parse_args(argv)

    from benchmarks.experiment import apply_overrides
    from cxr_model.config import build_config, load_config

    cfg = load_config(args.params)
    cfg = build_config(apply_overrides(cfg.raw, args.overrides), cfg.root)
    if args.pipeline:
        seconds = measure_pipeline(cfg, args.images, args.epochs)
        steady = seconds[1:]
        print(f"{args.images} images, {cfg.preprocess.image_size} px, epochs (s): "
              + " ".join(f"{s:.1f}" for s in seconds))
        print(f"after the first epoch: mean {np.mean(steady):.1f} s, fastest {min(steady):.1f} s, "
              f"{args.images / np.mean(steady):.0f} images/s")
        return 0
    if args.augmenter:
        print(f"batch of {cfg.train.batch_size} at {cfg.preprocess.image_size} px, ms per batch:")
        for name, ms in measure_augmenter(cfg):
            print(f"{name:>28} {ms:7.1f}", flush=True)
        return 0
    print(f"arch {cfg.model.arch}, filters {cfg.model.filters}, batch {cfg.train.batch_size}, "
          f"XLA {cfg.train.jit_compile}")
    print(f"{'size':>5} {'precision':>15} {'train img/s':>12} {'infer img/s':>12}")
    for size in args.size or [cfg.preprocess.image_size]:
        for precision in args.precision or [cfg.train.precision]:
            train, infer = measure(cfg, size, precision, args.steps)
            print(f"{size:>5} {precision:>15} {train:>12.0f} {infer:>12.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
