"""Where every step reads and writes: one table of paths, shared by the CLI, Prefect and dvc.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Output files of each step below the artifacts folder."""

    root: Path

    # ingest
    @property
    def manifest(self) -> Path:
        return self.root / "ingest" / "manifest.csv"

    @property
    def duplicates(self) -> Path:
        return self.root / "ingest" / "duplicates.csv"

    @property
    def ingest_summary(self) -> Path:
        return self.root / "ingest" / "summary.json"

    # validate
    @property
    def validation_dir(self) -> Path:
        return self.root / "validate"

    @property
    def validation_result(self) -> Path:
        return self.validation_dir / "result.json"

    @property
    def closest_pairs(self) -> Path:
        return self.validation_dir / "closest_pairs.csv"

    @property
    def closest_pairs_png(self) -> Path:
        return self.validation_dir / "closest_pairs.png"

    # profile
    @property
    def profile_dir(self) -> Path:
        return self.root / "profile"

    @property
    def film_stats(self) -> Path:
        return self.profile_dir / "film_stats.csv"

    @property
    def split_shift(self) -> Path:
        return self.profile_dir / "split_shift.csv"

    # retrain --serve without PREFECT_API_URL starts a Prefect server of its own
    @property
    def prefect_server_log(self) -> Path:
        return self.root / "retrain" / "prefect-server.log"

    # caches (keyed by content, safe to delete)
    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    # train
    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        return self.train_dir / "model.keras"

    @property
    def checkpoint(self) -> Path:
        return self.train_dir / "checkpoint.keras"

    @property
    def history(self) -> Path:
        return self.train_dir / "history.csv"

    @property
    def train_summary(self) -> Path:
        return self.train_dir / "summary.json"

    @property
    def training_curves(self) -> Path:
        return self.train_dir / "training_curves.png"

    # evaluate
    @property
    def evaluate_dir(self) -> Path:
        return self.root / "evaluate"

    @property
    def metrics(self) -> Path:
        return self.evaluate_dir / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.evaluate_dir / "predictions.csv"

    @property
    def roc_points(self) -> Path:
        return self.evaluate_dir / "roc_points.csv"

    # register
    @property
    def register_dir(self) -> Path:
        return self.root / "register"

    @property
    def registration(self) -> Path:
        return self.register_dir / "registration.json"

    @property
    def model_card(self) -> Path:
        return self.register_dir / "model_card.md"

    @property
    def model_card_json(self) -> Path:
        return self.register_dir / "model_card.json"

    @property
    def promotion(self) -> Path:
        return self.root / "register" / "promotion.json"

    # sweep (flows/sweep.py): one folder per sweep, one artifacts tree per trial below it
    def sweep_dir(self, sweep_id: str) -> Path:
        return self.root / "sweeps" / sweep_id

    # `cxr assess`: one folder per assessed cohort
    def assessment_dir(self, cohort: str) -> Path:
        return self.root / "assess" / cohort

    @property
    def active_run(self) -> Path:
        return self.root / "run" / "active.json"

    @property
    def lock(self) -> Path:
        return self.root / ".pipeline.lock"
