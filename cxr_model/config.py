"""Load and check params.yaml once, into typed, frozen settings."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cxr_model.errors import ConfigError
from cxr_model.images import FILM_SUFFIXES
from cxr_model.layout import Layout

PARAMS_ENV = "CXR_PARAMS"
DATA_ENV = "CXR_DATA"
TRACKING_ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class DataConfig:
    landing: str = "../shared/data/chest_xray"
    versioned: bool = True
    extensions: tuple[str, ...] = FILM_SUFFIXES
    val_fraction: float = 0.15
    seed: int = 42
    max_image_pixels: int = 50_000_000


@dataclass(frozen=True)
class ValidateConfig:
    min_side: int = 64
    max_aspect_ratio: float = 2.0
    min_images_per_class: int = 20
    pneumonia_share: tuple[float, ...] = (0.3, 0.85)
    allowed_modes: tuple[str, ...] = ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F", "DICOM")
    near_copy_correlation: float = 0.99
    max_examples: int = 10


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int = 128


@dataclass(frozen=True)
class ModelConfig:
    filters: tuple[int, ...] = (16, 32, 64, 128, 256)
    dense_units: int = 128
    dropout: float = 0.4
    spatial_dropout: float = 0.1
    normalize: str = "rescale"
    convs_deep: int = 1
    arch: str = "plain"
    stem_filters: int = 24
    stem_stride: int = 2
    ensemble: int = 1
    towers: int = 1
    clahe_tiles: int = 8
    clahe_clip: float = 2.0
    separable: bool = False
    pooling: str = "average"
    squeeze_excite: int = 0


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 7.0
    zoom: float = 0.1
    zoom_in: float = 0.0
    shift: float = 0.06
    brightness: float = 0.15
    contrast: float = 0.2
    gamma: float = 0.0
    blur: float = 0.0
    sharpen: float = 0.0
    downscale: float = 1.0
    corners: float = 0.0
    erase: float = 0.0
    aspect: float = 0.0
    noise: float = 0.0
    horizontal_flip: bool = False
    fused: bool = False


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 42
    epochs: int = 15
    batch_size: int = 32
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-5
    early_stopping_patience: int = 5
    early_stopping_start: int = 0
    class_weights: str = "balanced"
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    ema_momentum: float = 0.0
    mixup: float = 0.0
    type_head_weight: float = 0.0
    warmup_epochs: int = 0
    jit_compile: bool = False
    precision: str = "float32"
    deterministic: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class EvaluateConfig:
    threshold_method: str = "youden_midrange"
    youden_tolerance: float = 0.02
    target_sensitivity: float = 0.95
    fixed_threshold: float = 0.5


@dataclass(frozen=True)
class PredictConfig:
    max_image_bytes: int = 20_000_000
    min_side: int = 64
    max_aspect_ratio: float = 2.0
    max_colourfulness: float = 12.0
    min_contrast: float = 40.0
    mean_intensity: tuple[float, ...] = (20.0, 235.0)
    batch_size: int = 64
    gradcam_size: int = 512
    # DICOM headers, where filled in (empty list or 0: that check off)
    dicom_modalities: tuple[str, ...] = ("CR", "DX", "DR", "SC", "OT")
    dicom_body_parts: tuple[str, ...] = ("CHEST", "THORAX", "LUNG")
    dicom_views: tuple[str, ...] = ("AP", "PA")
    max_patient_age_years: float = 17.0

    def __post_init__(self) -> None:
        # Upper-cased once, as dicom.read_dicom gives the header: a list matches whatever its case.
        for name in ("dicom_modalities", "dicom_body_parts", "dicom_views"):
            object.__setattr__(self, name, tuple(str(v).upper() for v in getattr(self, name)))


@dataclass(frozen=True)
class PromoteConfig:
    min_val_auc: float = 0.95
    min_val_sensitivity: float = 0.9
    max_auc_drop: float = 0.005
    max_probe_ratio: float = 0.0         # 0: off
    max_aspect_jitter_drop: float = 0.0  # 0: off


@dataclass(frozen=True)
class RetrainConfig:
    cron: str = "0 2 * * *"
    lock_timeout_seconds: int = 3600
    max_concurrent_runs: int = 1


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "cxr-pneumonia"
    registered_model: str = "cxr-pneumonia"


@dataclass(frozen=True)
class DaskConfig:
    address: str = ""
    n_workers: int = 0
    threads_per_worker: int = 1


@dataclass(frozen=True)
class SweepConfig:
    method: str = "grid"
    trials: int = 0
    seed: int = 0
    space: dict = field(default_factory=dict)
    register_best: bool = True
    dask: DaskConfig = field(default_factory=DaskConfig)


@dataclass(frozen=True)
class TeamConfig:
    state_dir: str = ".team"
    host: str = "127.0.0.1"
    public_host: str = ""
    postgres_port: int = 5433
    mlflow_port: int = 5050
    prefect_port: int = 4200
    work_pool: str = "cxr"
    postgres_for_prefect: bool = True


@dataclass(frozen=True)
class Config:
    root: Path = Path(".")
    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    team: TeamConfig = field(default_factory=TeamConfig)
    artifacts_dir: str = "artifacts"
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def landing(self) -> Path:
        """Where new labelled images arrive: $CXR_DATA wins over params (a user's own copy)."""
        return self._resolve(os.environ.get(DATA_ENV) or self.data.landing)

    @property
    def dvc_data(self) -> Path:
        """The DVC-versioned import of the landing folder inside the project."""
        return self.root / "data" / "chest_xray"

    @property
    def data_source(self) -> Path:
        """The folder the pipeline reads: the versioned import, or the landing folder in place."""
        return self.dvc_data if self.data.versioned else self.landing

    @property
    def artifacts(self) -> Path:
        return self._resolve(self.artifacts_dir)

    @property
    def layout(self) -> Layout:
        return Layout(self.artifacts)

    @property
    def tracking_uri(self) -> str:
        """MLflow store: $MLFLOW_TRACKING_URI wins; a relative sqlite path hangs off the root."""
        uri = os.environ.get(TRACKING_ENV) or self.mlflow.tracking_uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
            uri = prefix + str(self._resolve(uri[len(prefix):]))
        return uri

    @property
    def artifact_root(self) -> Path:
        return self._resolve(self.mlflow.artifact_root)

    def _resolve(self, value: str | os.PathLike) -> Path:
        path = Path(os.path.expanduser(str(value)))
        return path if path.is_absolute() else (self.root / path).resolve()

    def recorded(self, path: str | os.PathLike) -> str:
        """A path as DVC-tracked outputs write it: relative below the project, so that clones of one
        commit at different places (and systems) write the same bytes and agree with dvc.lock."""
        path, root = Path(path).resolve(), self.root.resolve()
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    def flat_params(self) -> dict[str, str]:
        """Every parameter as dotted keys, for MLflow."""
        return _flatten(self.raw)

    def settings_fingerprint(self) -> str:
        """Hash of the settings that shape a trained model (not where data or runs live), so a
        retrain can tell "tried this before" from "something changed"."""
        shaping = {key: self.raw.get(key) for key in ("data", "preprocess", "model", "train", "evaluate")}
        shaping["data"] = {k: v for k, v in (shaping["data"] or {}).items() if k not in ("landing", "versioned")}
        return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()


def _flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


def _build(cls: type, values: object, where: str):
    """Build a dataclass from a mapping, refusing unknown keys and wrong types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name not in ("root", "raw")}
    unknown = sorted(set(values) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        place = f"in '{where}'" if where else "at the top level"
        raise ConfigError(f"unknown key(s) {place}: {', '.join(unknown)}{hint}")
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(hint: object, value: object, where: str) -> object:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, where) for v in value)
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{where}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{where}' must be a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{where}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{where}' must be text, got {value!r}")
        return value
    raise ConfigError(f"'{where}': unsupported setting type {hint}")  # pragma: no cover


def _check(cfg: Config) -> None:
    """Range checks that the types alone cannot express."""
    rules = [
        (0.0 < cfg.data.val_fraction < 0.5, "data.val_fraction must be in (0, 0.5)"),
        (0.0 < cfg.validate.near_copy_correlation <= 1.0, "validate.near_copy_correlation must be in (0, 1]"),
        (len(cfg.validate.pneumonia_share) == 2 and 0 <= cfg.validate.pneumonia_share[0]
         < cfg.validate.pneumonia_share[1] <= 1, "validate.pneumonia_share must be [low, high] in [0, 1]"),
        (cfg.validate.min_images_per_class >= 1, "validate.min_images_per_class must be >= 1"),
        (16 <= cfg.preprocess.image_size <= 512, "preprocess.image_size must be in [16, 512]"),
        (cfg.train.epochs >= 1, "train.epochs must be >= 1"),
        (cfg.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (cfg.train.learning_rate > 0, "train.learning_rate must be > 0"),
        (cfg.train.class_weights in ("balanced", "resample", "none"),
         "train.class_weights must be balanced, resample or none"),
        (len(cfg.model.filters) >= 1, "model.filters must list at least one block"),
        (0.0 <= cfg.model.dropout < 1.0, "model.dropout must be in [0, 1)"),
        (0.0 <= cfg.model.spatial_dropout < 1.0, "model.spatial_dropout must be in [0, 1)"),
        (cfg.model.dense_units >= 0, "model.dense_units must be >= 0 (0: no hidden dense layer)"),
        (cfg.model.normalize in ("rescale", "per_image", "equalize", "clahe"),
         "model.normalize must be rescale, per_image, equalize or clahe"),
        (cfg.model.pooling in ("average", "max", "gem"), "model.pooling must be average, max or gem"),
        (cfg.model.squeeze_excite >= 0, "model.squeeze_excite must be >= 0 (0: none; else the gates' reduction ratio)"),
        (1 <= cfg.model.clahe_tiles <= 16, "model.clahe_tiles must be 1 to 16"),
        (cfg.model.clahe_clip >= 1.0, "model.clahe_clip must be >= 1 (1: no equalisation within regions)"),
        (1 <= cfg.model.convs_deep <= 3, "model.convs_deep must be 1, 2 or 3"),
        (cfg.model.arch in ("plain", "residual"), "model.arch must be plain or residual"),
        (cfg.model.stem_filters >= 16, "model.stem_filters must be >= 16 (4, 8 and 12 crashed TensorFlow's "
                                        "CPU kernels in training at 192 px: results.md TW1)"),
        (cfg.model.stem_stride in (2, 4), "model.stem_stride must be 2 or 4"),
        (cfg.model.stem_stride == 2 or cfg.model.arch == "residual", "model.stem_stride applies to arch: residual only"),
        (1 <= cfg.model.ensemble <= 5, "model.ensemble must be 1 to 5 members"),
        (1 <= cfg.model.towers <= 5, "model.towers must be 1 to 5"),
        (cfg.model.towers == 1 or cfg.model.ensemble == 1,
         "model.towers and model.ensemble cannot both be above 1 (towers are an ensemble trained in one pass)"),
        (cfg.model.towers == 1 or (cfg.train.type_head_weight == 0 and cfg.train.mixup == 0),
         "model.towers above 1 cannot be combined with train.type_head_weight or train.mixup"),
        (cfg.retrain.max_concurrent_runs >= 1, "retrain.max_concurrent_runs must be >= 1"),
        (cfg.retrain.lock_timeout_seconds >= 0,
         "retrain.lock_timeout_seconds must be >= 0 (0: give up at once when another run holds the lock)"),
        (cfg.promote.max_probe_ratio == 0 or cfg.promote.max_probe_ratio > 1,
         "promote.max_probe_ratio must be above 1 (a NORMAL score multiple), or 0 for no gate"),
        (cfg.promote.max_aspect_jitter_drop >= 0, "promote.max_aspect_jitter_drop must be >= 0 (0: no gate)"),
        (cfg.train.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (cfg.train.warmup_epochs >= 0, "train.warmup_epochs must be >= 0"),
        (cfg.train.early_stopping_start >= 0, "train.early_stopping_start must be >= 0"),
        (0.0 <= cfg.train.ema_momentum < 1.0, "train.ema_momentum must be in [0, 1)"),
        (0.0 <= cfg.train.mixup <= 1.0, "train.mixup must be in [0, 1]"),
        (cfg.train.type_head_weight >= 0, "train.type_head_weight must be >= 0"),
        (cfg.train.type_head_weight == 0 or cfg.train.mixup == 0,
         "train.type_head_weight and train.mixup cannot be combined (mixup blends labels; types cannot be)"),
        (0.0 <= cfg.train.augment.zoom_in < 1.0, "train.augment.zoom_in must be in [0, 1)"),
        (0.0 <= cfg.train.augment.sharpen <= 0.5, "train.augment.sharpen must be in [0, 0.5]"),
        (1.0 <= cfg.train.augment.downscale <= 4.0, "train.augment.downscale must be in [1, 4]"),
        (0.0 <= cfg.train.augment.corners <= 0.4, "train.augment.corners must be in [0, 0.4]"),
        (0.0 <= cfg.train.augment.erase <= 0.5, "train.augment.erase must be in [0, 0.5]"),
        (0.0 <= cfg.train.augment.aspect <= 0.5, "train.augment.aspect must be in [0, 0.5]"),
        (cfg.train.precision in ("float32", "mixed_bfloat16"), "train.precision must be float32 or mixed_bfloat16"),
        (
            cfg.evaluate.threshold_method in ("youden_midrange", "target_sensitivity", "fixed"),
            "evaluate.threshold_method must be youden_midrange, target_sensitivity or fixed",
        ),
        (0.0 < cfg.evaluate.target_sensitivity <= 1.0, "evaluate.target_sensitivity must be in (0, 1]"),
        (0.0 < cfg.evaluate.fixed_threshold < 1.0, "evaluate.fixed_threshold must be in (0, 1)"),
        (cfg.predict.max_image_bytes > 0, "predict.max_image_bytes must be > 0"),
        (len(cfg.predict.mean_intensity) == 2 and cfg.predict.mean_intensity[0] < cfg.predict.mean_intensity[1],
         "predict.mean_intensity must be [low, high]"),
        (cfg.predict.batch_size >= 1, "predict.batch_size must be >= 1"),
        (cfg.predict.max_patient_age_years >= 0, "predict.max_patient_age_years must be >= 0 (0: off)"),
        (all(e.startswith(".") for e in cfg.data.extensions), "data.extensions must start with a dot"),
        (cfg.sweep.method in ("grid", "random"), "sweep.method must be grid or random"),
        (cfg.sweep.trials >= 0, "sweep.trials must be >= 0"),
        (cfg.sweep.dask.n_workers >= 0 and cfg.sweep.dask.threads_per_worker >= 1,
         "sweep.dask.n_workers must be >= 0 and sweep.dask.threads_per_worker >= 1"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def default_params_path() -> Path:
    """params.yaml of the current project: $CXR_PARAMS, else ./params.yaml."""
    return Path(os.environ.get(PARAMS_ENV) or "params.yaml").resolve()


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read params.yaml once and return checked settings; relative paths hang off its folder."""
    params_path = Path(path).resolve() if path else default_params_path()
    if not params_path.is_file():
        raise ConfigError(f"parameters file not found: {params_path}")
    try:
        raw = yaml.safe_load(params_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{params_path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{params_path} must hold a mapping of sections")
    try:
        return build_config(raw, params_path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{params_path}: {exc}") from exc


def with_overrides(cfg: Config, overrides: dict[str, object]) -> Config:
    """The same project's settings with dotted keys replaced (a sweep trial), checked like params.yaml."""
    raw = copy.deepcopy(cfg.raw)
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"cannot override '{dotted}': '{key}' is not a section")
            node = child
        node[leaf] = value
    return build_config(raw, cfg.root)


def build_config(raw: dict, root: Path) -> Config:
    """Checked settings from an already-parsed params mapping (relative paths hang off root)."""
    cfg = _build(Config, raw, "")
    cfg = dataclasses.replace(cfg, root=Path(root), raw=raw)
    _check(cfg)
    return cfg
