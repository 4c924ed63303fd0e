"""Score new images with a trained model: the same preprocessing as training, per-file reasons
for unusable inputs, and Grad-CAM overlays."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_model import film_stats, images
from cxr_model.config import Config, PredictConfig
from cxr_model.data import LABELS
from cxr_model.dicom import is_dicom_file
from cxr_model.images import ImageError
from cxr_model.plausibility import implausibility

log = logging.getLogger("cxr.prediction")

SETTINGS_FILE = "settings.json"


@dataclass
class Prepared:
    """One input after decoding: model-ready pixels, or the reason it cannot be scored."""

    x: np.ndarray | None = None
    gray: np.ndarray | None = None
    error: str = ""
    patient: str = ""  # a DICOM header's PatientID; kept in memory, never written out
    scanner: str = ""  # a DICOM header's manufacturer and model, for figures per scanner


def borderline_band(ci: dict | None) -> tuple[float, float] | None:
    """The threshold's validation interval ({"low", "high"}) as the band of borderline scores, or
    None when there is none or it is a single point (every resample picked the same threshold)."""
    if not ci or not ci["low"] < ci["high"]:
        return None
    return float(ci["low"]), float(ci["high"])


@dataclass
class Predictor:
    """A loaded model with everything needed to use it like the pipeline did."""

    model: object
    threshold: float
    image_size: int
    max_pixels: int
    settings: PredictConfig = field(default_factory=PredictConfig)
    card: dict = field(default_factory=dict)
    source: str = ""
    # The threshold's 95 % interval over validation resamples: a score inside it is borderline,
    # as the threshold itself could have fallen on either side of it (None: no interval known).
    band: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        import tensorflow as tf

        model = self.model
        spec = tf.TensorSpec((None, self.image_size, self.image_size, 1), tf.float32)
        # A traced call avoids Keras predict()'s per-call set-up: single images in a few ms.
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    # -- settings travel with the model ------------------------------------------------------
    def settings_dict(self) -> dict:
        return {"threshold": self.threshold, "image_size": self.image_size, "max_pixels": self.max_pixels,
                "predict": dataclasses.asdict(self.settings), "labels": list(LABELS),
                "threshold_ci95": list(self.band) if self.band else None}

    @classmethod
    def from_files(cls, model_path: str | Path, settings_path: str | Path, card: dict | None = None,
                   source: str = "") -> "Predictor":
        from cxr_model.model import keras

        s = json.loads(Path(settings_path).read_text())
        predict = PredictConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in s["predict"].items()})
        model = keras.models.load_model(model_path, compile=False)
        band = s.get("threshold_ci95")
        if band is None:  # registered before the settings held it: the model card may
            band = borderline_band(((card or {}).get("threshold") or {}).get("ci95"))
        return cls(model, float(s["threshold"]), int(s["image_size"]), int(s["max_pixels"]), predict,
                   card or {}, source or str(model_path), tuple(band) if band else None)

    def reads_like(self, other: "Predictor") -> bool:
        """Whether `other` decodes, checks and resizes films exactly as this one does, so that
        the inputs prepared for one can be scored by the other without decoding them again."""
        return (self.image_size, self.max_pixels, self.settings) == (other.image_size, other.max_pixels, other.settings)

    # -- scoring -------------------------------------------------------------------------------
    def prepare(self, data: bytes | Prepared) -> Prepared:
        """Decode and check one input; never raises for bad input."""
        if isinstance(data, Prepared):  # already refused upstream (unreadable file, bad base64)
            return data
        if len(data) > self.settings.max_image_bytes:
            return Prepared(error=f"upload of {len(data):,} bytes exceeds the "
                                  f"{self.settings.max_image_bytes:,}-byte limit")
        try:
            decoded = images.decode(data, self.max_pixels)
        except ImageError as exc:
            return Prepared(error=f"not a usable image: {exc}")
        reason = implausibility(decoded, self.settings)
        if reason:
            return Prepared(gray=decoded.gray, error=f"not a plausible frontal chest X-ray: {reason}")
        return Prepared(x=images.preprocess(decoded.gray, self.image_size), gray=decoded.gray,
                        patient=decoded.header.get("PatientID", ""), scanner=decoded.header.get("scanner", ""))

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(pneumonia) for uint8 images shaped (n, size, size) or (n, size, size, 1)."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.image_size, self.image_size, 1)
        out = [self._forward(x[i:i + self.settings.batch_size]).numpy().reshape(-1)
               for i in range(0, len(x), self.settings.batch_size)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def score(self, prepared: list[Prepared]) -> pd.DataFrame:
        """One row per input: probability, label at the stored threshold, whether the score is
        borderline (inside the threshold's validation interval; None when unknown), error."""
        ok = [i for i, p in enumerate(prepared) if p.x is not None]
        prob = np.full(len(prepared), np.nan)
        if ok:
            prob[ok] = self.probabilities(np.stack([prepared[i].x for i in ok]))
        label = [LABELS[int(p >= self.threshold)] if np.isfinite(p) else None for p in prob]
        low, high = self.band or (np.nan, np.nan)
        borderline = [bool(low <= p <= high) if self.band and np.isfinite(p) else None for p in prob]
        # object columns keep None (JSON null) for refused inputs instead of NaN
        return pd.DataFrame({
            "probability": pd.Series([float(p) if np.isfinite(p) else None for p in prob], dtype=object),
            "label": pd.Series(label, dtype=object),
            "threshold": self.threshold,
            "borderline": pd.Series(borderline, dtype=object),
            "error": pd.Series([p.error or None for p in prepared], dtype=object),
        })

    def prepare_many(self, payloads: list[bytes]) -> list[Prepared]:
        """Decode in threads (Pillow releases the GIL), keeping the input order."""
        if len(payloads) < 4:
            return [self.prepare(data) for data in payloads]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            return list(pool.map(self.prepare, payloads))

    def predict_bytes(self, payloads: list[bytes]) -> pd.DataFrame:
        return self.score(self.prepare_many(payloads))

    def predict_files(self, paths: list[Path], out_dir: Path | None = None, gradcam: bool = True,
                      progress: bool = True, headers: bool = False, statistics: bool = False,
                      keep_inputs: list[Prepared] | None = None) -> pd.DataFrame:
        """Score files in batches; write Grad-CAM overlays when out_dir is given; with `headers`,
        columns `patient` and `scanner` hold each DICOM film's PatientID and scanner (empty for
        other files): for grouping in memory, the patient to be dropped before anything is written;
        with `statistics`, each scored film's film_stats columns (brightness, contrast, detail);
        with `keep_inputs`, each file's model input (or refusal) is appended to it, in order, for
        a second model that `reads_like` this one to `score` without decoding the films again."""
        from tqdm import tqdm

        from cxr_model.gradcam import GradCam, save_overlay

        cam = GradCam(self.model) if gradcam and out_dir is not None else None
        frames = []
        bar = tqdm(total=len(paths), unit="img", disable=not progress or len(paths) < 2, desc="predict")
        step = self.settings.batch_size
        for start in range(0, len(paths), step):
            chunk = paths[start:start + step]
            payloads = [_read(path) for path in chunk]
            prepared = self.prepare_many(payloads)
            if keep_inputs is not None:  # the model input only: full-size pixels stay behind
                keep_inputs.extend(Prepared(x=p.x, error=p.error) for p in prepared)
            frame = self.score(prepared)
            frame.insert(0, "path", [str(p) for p in chunk])
            # The content scored, for audit (and cohort fingerprints) without reading files again.
            frame.insert(1, "sha256", [hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else None
                                       for data in payloads])
            frame["heatmap"] = None
            if headers:
                frame["patient"] = [p.patient for p in prepared]
                frame["scanner"] = [p.scanner for p in prepared]
            ok = [i for i, p in enumerate(prepared) if p.x is not None]
            if statistics:
                stats = film_stats.film_statistics(np.stack([prepared[i].x for i in ok]) if ok else
                                                   np.zeros((0, self.image_size, self.image_size), np.uint8))
                for name in stats.columns:
                    frame[name] = np.nan
                    frame.loc[ok, name] = stats[name].to_numpy()
            if cam is not None and ok:
                maps = cam.heatmaps(np.stack([prepared[i].x for i in ok])[..., None].astype(np.float32))
                for i, heat in zip(ok, maps):
                    row = frame.iloc[i]
                    name = f"{start + i:05d}_{Path(chunk[i]).stem}_gradcam.png"
                    caption = f"P(pneumonia) {row['probability']:.3f} -> {row['label']} (threshold {self.threshold:.3f})"
                    frame.at[i, "heatmap"] = str(save_overlay(prepared[i].gray, heat, out_dir / name,
                                                              self.settings.gradcam_size, caption))
            frames.append(frame)
            bar.update(len(chunk))
        bar.close()
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["path", "sha256", "probability", "label", "threshold", "borderline", "error", "heatmap"])


def _read(path: Path) -> bytes | Prepared:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        return Prepared(error=f"cannot read file: {exc.strerror or exc}")


def collect_inputs(targets: list[str | Path]) -> tuple[list[Path], list[str], list[Path]]:
    """Files named directly, plus the films found below named folders; the missing targets; and
    the folders' other files, passed over (so a user sees what was not scored)."""
    files, missing, passed_over = [], [], []
    for target in map(Path, targets):
        if target.is_dir():
            for path in sorted(p for p in target.rglob("*") if p.is_file()):
                (files if is_film_file(path) else passed_over).append(path)
        elif target.exists():
            files.append(target)
        else:
            missing.append(str(target))
    return files, missing, passed_over


def is_film_file(path: Path) -> bool:
    """An image suffix, or DICOM content under any name: PACS exports often name files by UID
    (dots and digits) or with no suffix at all."""
    return path.suffix.lower() in images.FILM_SUFFIXES or is_dicom_file(path)


def content_fingerprint(entries) -> str:
    """Hash of what a batch of films holds (each film's content hash, in any order): the same films
    give the same fingerprint wherever they sit, so runs on them can be matched."""
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16]


def film_shift(results: pd.DataFrame, training_films: dict | None) -> pd.DataFrame | None:
    """A batch's scored films against the model's training films: the training classes mixed in
    the share the model called PNEUMONIA, as a batch carries no labels. Films unlike the training
    films are films the model's figures may not hold for. None when the model's card holds no
    training-film reference (registered before it did) or nothing was scored."""
    scored = results[results["error"].isna()]
    if not training_films or scored.empty or not set(film_stats.STATISTICS) <= set(scored.columns):
        return None
    return film_stats.compare(training_films, film_stats.columns(scored), called=(scored["label"] == LABELS[1]).to_numpy())


def write_summary(results: pd.DataFrame, out_dir: Path, model: dict, shift: pd.DataFrame | None = None,
                  training_films: dict | None = None) -> tuple[Path, Path]:
    """predictions.csv and predictions.json (with the model it came from) for the batch; with the
    batch's `shift` against the `training_films`, film_shift.csv and film_shift.png too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "predictions.csv", out_dir / "predictions.json"
    results.to_csv(csv_path, index=False)
    counts = results["label"].value_counts().to_dict()
    payload = {"model": model, "images": len(results), "scored": int(results["error"].isna().sum()),
               "refused": int(results["error"].notna().sum()), "labels": counts,
               "predictions": json.loads(results.to_json(orient="records"))}
    shift_csv, shift_png = out_dir / "film_shift.csv", out_dir / "film_shift.png"
    if shift is not None and training_films:
        from cxr_model import plots

        payload["film_shift"] = json.loads(shift.to_json(orient="records"))
        shift.to_csv(shift_csv, index=False)
        scored = results[results["error"].isna()]
        plots.film_shift(shift, training_films, film_stats.columns(scored), None, shift_png, "batch")
    else:  # an earlier batch's comparison in the same folder would be read as this one's
        shift_csv.unlink(missing_ok=True)
        shift_png.unlink(missing_ok=True)
    json_path.write_text(json.dumps(payload, indent=2))
    return csv_path, json_path


def log_batch_run(cfg: Config, results: pd.DataFrame, shift: pd.DataFrame | None, paths: list[Path],
                  info: dict) -> str:
    """One MLflow run per tracked batch (kind "batch"): films scored and refused, the share called
    PNEUMONIA and borderline, and each film-shift distance, so a site's batches can be followed
    over time in the MLflow UI. Only these aggregates and `paths` (the comparison's table and plot)
    are logged: no film's name, score or identifier leaves the batch's own output folder."""
    import mlflow

    from cxr_model import tracking

    scored = results[results["error"].isna()]
    run_id = tracking.usage_run(cfg, "batch", "batch", info, {
        "cxr.batch_path": info["path"],
        "cxr.batch_fingerprint": content_fingerprint(sha or "unreadable" for sha in results["sha256"])})
    metrics = {"batch_films": len(scored), "batch_refused": len(results) - len(scored)}
    if len(scored):
        metrics["batch_called_pneumonia"] = float((scored["label"] == LABELS[1]).mean())
        if scored["borderline"].notna().any():
            metrics["batch_borderline"] = float(scored["borderline"].fillna(False).astype(bool).mean())
    if shift is not None:
        metrics.update({f"batch_shift_{row.statistic}_ks": float(row.ks) for row in shift.itertuples()})
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)
        tracking.log_files(paths, "batch")
    return run_id
