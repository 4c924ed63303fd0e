"""Prediction latency and throughput of a trained model on real test images.

    python -m benchmarks.predict_speed                      # the registered champion
    python -m benchmarks.predict_speed --model artifacts/train/model.keras

Prints single-image latency (p50/p95; model loaded, Grad-CAM excluded) for the model call
alone and for bytes -> decode -> preprocess -> probability, and batch throughput for both.
Targets from the serving issue: p50 <= 20 ms, >= 500 images/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="version, @alias, URI or .keras file (default: the champion)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", type=int, default=512, help="test images used for the batch figures")
    parser.add_argument("--repeats", type=int, default=200, help="single-image calls timed")
    args = parser.parse_args(argv)

    from cxr_model import data, serving, tracking
    from cxr_model.config import load_config

    cfg = load_config(args.params)
    tracking.client(cfg)
    predictor = serving.load_predictor(
        serving.resolve_uri(args.model, cfg.mlflow.registered_model), None,
        {"max_pixels": cfg.data.max_image_pixels, "predict": cfg.predict},
    )
    manifest = data.read_manifest(cfg.layout.manifest)
    paths = manifest.loc[manifest["split"] == "test", "path"].head(args.images)
    payloads = [(cfg.data_source / p).read_bytes() for p in paths]
    x = np.stack([predictor.prepare(b).x for b in payloads])
    print(f"model {predictor.source}: {predictor.image_size} px, {len(payloads)} real test images")

    for _ in range(10):  # warm-up: tracing, oneDNN kernels
        predictor.probabilities(x[:1])
        predictor.predict_bytes(payloads[:1])
    model_only, end_to_end = [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        predictor.probabilities(x[i % len(x)][None])
        model_only.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        predictor.predict_bytes([payloads[i % len(payloads)]])
        end_to_end.append((time.perf_counter() - t) * 1000)
    predictor.probabilities(x)
    t = time.perf_counter()
    predictor.probabilities(x)
    batch_model = len(x) / (time.perf_counter() - t)
    t = time.perf_counter()
    predictor.predict_bytes(payloads)
    batch_e2e = len(payloads) / (time.perf_counter() - t)

    print(f"single image, model call:          p50 {statistics.median(model_only):6.2f} ms   "
          f"p95 {_percentile(model_only, 95):6.2f} ms")
    print(f"single image, bytes -> probability: p50 {statistics.median(end_to_end):6.2f} ms   "
          f"p95 {_percentile(end_to_end, 95):6.2f} ms")
    print(f"batch of {len(x)}, model call:          {batch_model:8.0f} images/s "
          f"(batch size {predictor.settings.batch_size})")
    print(f"batch of {len(x)}, bytes -> probability: {batch_e2e:8.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
