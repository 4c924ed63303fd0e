"""The experiment runner's record and table: what the selection rules in results.md read."""

import json

import benchmarks.experiment as experiment
from benchmarks.experiment import apply_overrides, robustness, table


def _metrics(noise: float, half_res: float) -> dict:
    probes = {"as_is": 1.0, "noise_10": noise, "half_res": half_res, "gamma_1_5": 1.01}
    return {"val_probes": {k: {"auc": 0.99, "normal_ratio": v} for k, v in probes.items()},
            "by_type": {"val": {"virus": {"auc": 0.9931}, "bacteria": {"auc": 0.9972}},
                        "test": {"virus": {"auc": 0.5}}}, "val_aspect_jitter_auc": 0.9876}


def _row(name: str, val_auc: float, **extra) -> dict:
    test = {"auc": 0.95, "accuracy": 0.86, "sensitivity": 0.97, "specificity": 0.68}
    return {"name": name, "overrides": [], "val_auc": val_auc, "threshold": 0.3, "test": test,
            "test_at_0_5": {"accuracy": 0.88}, "best_epoch": 14, "epochs_run": 16,
            "train_seconds": 400.0, "train_images_per_second": 180.0, **extra}


def test_robustness_keeps_every_probe_ratio_and_the_validation_auc_per_type():
    kept = robustness(_metrics(noise=1.55, half_res=1.2))
    assert kept["val_probe_ratios"]["noise_10"] == 1.55 and len(kept["val_probe_ratios"]) == 4
    assert kept["val_auc_by_type"] == {"virus": 0.9931, "bacteria": 0.9972}  # validation, never test
    assert kept["val_aspect_jitter_auc"] == 0.9876
    assert robustness({}) == {"val_probe_ratios": {}, "val_auc_by_type": {}, "val_aspect_jitter_auc": None}


def test_table_names_the_largest_probe_and_marks_rows_recorded_without_probes():
    rows = [_row("OLD", 0.9970), _row("NEW", 0.9960, **robustness(_metrics(noise=1.1, half_res=1.6)))]
    lines = table(rows).splitlines()
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    header = [c.strip() for c in lines[0].split("|")[2:-1]]
    new, old = dict(zip(header, cells["NEW"])), dict(zip(header, cells["OLD"]))
    assert new["largest probe"] == "1.60 (half_res)" and new["noise probe"] == "1.10"
    assert new["val AUC viral"] == "0.9931" and new["val AUC aspect-jittered"] == "0.9876"
    assert old["largest probe"] == old["noise probe"] == old["val AUC viral"] == old["val AUC aspect-jittered"] == "—"
    assert lines[2].startswith("| OLD")  # best validation AUC first


def test_a_blind_table_shows_every_validation_column_and_no_test_figure(tmp_path, monkeypatch, capsys):
    row = _row("AS9", 0.9893, **robustness(_metrics(noise=1.1, half_res=1.6)))
    row["test"] = {"auc": 0.9517, "accuracy": 0.8623, "sensitivity": 0.9741, "specificity": 0.6834}
    row["test_at_0_5"] = {"accuracy": 0.8811}
    test_figures = ("0.9517", "0.8623", "0.9741", "0.6834", "0.8811")
    seen, blind = table([row]), table([row], blind=True)
    assert all(f in seen for f in test_figures) and not any(f in blind for f in test_figures)
    header = [c.strip() for c in blind.splitlines()[0].split("|")[1:-1]]
    assert header == ["run", "overrides", "val AUC", "val AUC viral", "val AUC aspect-jittered", "largest probe",
                      "noise probe", "threshold", "epochs", "train s", "img/s"]
    assert "| AS9 | (params.yaml) | 0.9893 | 0.9931 | 0.9876 | 1.60 (half_res) | 1.10 | 0.300 |" in blind

    results = tmp_path / "experiments.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in (row, _row("B1", 0.99), _row("AS9-S43", 0.98))) + "\n")
    monkeypatch.setattr(experiment, "RESULTS", results)
    assert experiment.main(["--table", "--blind", "--only", "AS9"]) == 0
    printed = capsys.readouterr().out
    assert "| AS9 |" in printed and "| AS9-S43 |" in printed and "| B1 |" not in printed
    assert not any(f in printed for f in test_figures)


def test_overrides_set_nested_keys_with_yaml_values_on_a_copy():
    raw = {"train": {"augment": {"noise": 12.0}}}
    out = apply_overrides(raw, ["train.augment.noise=18", "model.filters=[8, 16]"])
    assert out["train"]["augment"]["noise"] == 18 and out["model"]["filters"] == [8, 16]
    assert raw["train"]["augment"]["noise"] == 12.0


def test_an_override_of_the_data_gets_its_own_manifest_and_others_share_the_pipelines(tmp_path):
    import pandas as pd

    from benchmarks.experiment import prepare
    from cxr_model import steps
    from cxr_model.config import load_config
    from tests.conftest import make_dataset, write_params

    params = write_params(tmp_path / "project", make_dataset(tmp_path / "landing", normal_patients=20,
                                                             pneumonia_patients=20))
    base = load_config(params)
    steps.ingest(base)

    def val_patients(cfg):
        manifest = pd.read_csv(cfg.layout.manifest)
        return set(manifest.loc[manifest["split"] == "val", "patient_id"])

    same = prepare("SAME", ["train.seed=43"], params)
    assert same.layout.manifest.resolve() == base.layout.manifest.resolve()
    (base.artifacts / "experiments" / "REDRAWN").mkdir(parents=True)
    (base.artifacts / "experiments" / "REDRAWN" / "ingest").symlink_to(base.artifacts / "ingest")
    pipeline_manifest = base.layout.manifest.read_bytes()
    redrawn = prepare("REDRAWN", ["data.seed=43"], params)
    assert base.layout.manifest.read_bytes() == pipeline_manifest  # never written through a link
    assert not redrawn.layout.manifest.is_symlink() and not (redrawn.artifacts / "ingest").is_symlink()
    assert redrawn.data.seed == 43 and val_patients(redrawn) != val_patients(base)
    assert (redrawn.artifacts / "cache").resolve() == (base.artifacts / "cache").resolve()
