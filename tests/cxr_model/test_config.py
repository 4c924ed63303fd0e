from pathlib import Path

import pytest
import yaml

from cxr_model.config import load_config
from cxr_model.errors import ConfigError
from tests.conftest import ROOT


def test_project_params_load_with_defaults_resolved_against_the_file():
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.landing == (ROOT / ".." / "shared" / "data" / "chest_xray").resolve()
    assert cfg.data_source == ROOT / "data" / "chest_xray"  # the DVC-versioned import
    assert cfg.artifacts == ROOT / "artifacts"
    assert cfg.tracking_uri == f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}"
    assert cfg.flat_params()["train.augment.horizontal_flip"] == "False"


def test_environment_overrides_data_source_and_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.landing == tmp_path / "mine"
    assert cfg.tracking_uri == "http://127.0.0.1:5000"


def test_recorded_paths_are_relative_below_the_project_and_absolute_outside(tmp_path):
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.recorded(ROOT / "data" / "chest_xray") == str(Path("data") / "chest_xray")
    assert cfg.recorded(tmp_path / "mine") == str(tmp_path / "mine")
    assert cfg.recorded(ROOT / ".." / "elsewhere") == str((ROOT / ".." / "elsewhere").resolve())


def _params(tmp_path: Path, mutate) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p["train"].update(epochs="ten"), "'train.epochs' must be a whole number"),
        (lambda p: p["train"].update(epochz=3), "unknown key(s) in 'train': epochz (did you mean epochs?)"),
        (lambda p: p.update(trian=p.pop("train")), "unknown key(s) at the top level: trian (did you mean train?)"),
        (lambda p: p["data"].update(val_fraction=0.9), "data.val_fraction must be in (0, 0.5)"),
        (lambda p: p["evaluate"].update(threshold_method="max_f1"), "evaluate.threshold_method"),
        (lambda p: p["train"]["augment"].update(horizontal_flip="yes"), "horizontal_flip' must be true or false"),
        (lambda p: p["retrain"].update(max_concurrent_runs=0), "retrain.max_concurrent_runs must be >= 1"),
        (lambda p: p["retrain"].update(lock_timeout_seconds=-1), "retrain.lock_timeout_seconds must be >= 0"),
        (lambda p: p["predict"].update(max_patient_age_years=-1), "predict.max_patient_age_years must be >= 0"),
        (lambda p: p["validate"].update(near_copy_correlation=0), "validate.near_copy_correlation must be in (0, 1]"),
        (lambda p: p["train"].update(type_head_weight=0.3, mixup=0.2), "type_head_weight and train.mixup cannot"),
        (lambda p: p["model"].update(stem_stride=3), "model.stem_stride must be 2 or 4"),
        (lambda p: p["model"].update(towers=2, ensemble=2), "model.towers and model.ensemble cannot both be above 1"),
        (lambda p: p["model"].update(towers=2) or p["train"].update(mixup=0.2), "model.towers above 1 cannot be combined"),
        (lambda p: p["model"].update(towers=9), "model.towers must be 1 to 5"),
        (lambda p: p["model"].update(stem_filters=12), "model.stem_filters must be >= 16"),
        (lambda p: p["model"].update(squeeze_excite=-1), "model.squeeze_excite must be >= 0"),
        (lambda p: p["model"].update(pooling="attention"), "model.pooling must be average, max or gem"),
        (lambda p: p["model"].update(arch="plain", stem_stride=4), "model.stem_stride applies to arch: residual only"),
        (lambda p: p["promote"].update(max_probe_ratio=0.8), "promote.max_probe_ratio must be above 1"),
        (lambda p: p["promote"].update(max_aspect_jitter_drop=-0.1), "promote.max_aspect_jitter_drop must be >= 0"),
    ],
)
def test_bad_params_are_refused_with_the_key_named(tmp_path, mutate, message):
    path = _params(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(err.value).startswith(f"{path}: ")


def test_missing_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="parameters file not found"):
        load_config(tmp_path / "nope.yaml")


def test_settings_fingerprint_changes_with_what_shapes_the_model_only(tmp_path):
    def fingerprint(mutate) -> str:
        return load_config(_params(tmp_path, mutate)).settings_fingerprint()

    base = fingerprint(lambda p: None)
    assert base == fingerprint(lambda p: None)
    # Where data and runs live, and what happens after training, do not count.
    for mutate in (lambda p: p["data"].update(landing="/elsewhere/chest_xray", versioned=False),
                   lambda p: p["promote"].update(max_auc_drop=0.5),
                   lambda p: p["mlflow"].update(experiment="other"),
                   lambda p: p["retrain"].update(cron="0 3 * * *")):
        assert fingerprint(mutate) == base
    for mutate in (lambda p: p["train"].update(seed=7),
                   lambda p: p["train"]["augment"].update(zoom_in=0.1),
                   lambda p: p["model"].update(normalize="rescale"),
                   lambda p: p["data"].update(val_fraction=0.2),
                   lambda p: p["preprocess"].update(image_size=96),
                   lambda p: p["evaluate"].update(youden_tolerance=0.05)):
        assert fingerprint(mutate) != base
