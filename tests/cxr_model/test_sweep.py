"""Sweep planning and choice: grid/random expansion, checked overrides, best by validation AUC,
and a trial trained into a run nested under the sweep's run (synthetic data, local MLflow)."""

import pandas as pd
import pytest

from cxr_model import steps, sweep
from cxr_model.config import build_config, load_config, with_overrides
from cxr_model.errors import ConfigError, CxrError
from tests.conftest import mlflow_client, write_params


def _cfg(tmp_path, **sweep_settings):
    raw = load_config(write_params(tmp_path / "project", tmp_path / "landing")).raw
    raw = {**raw, "sweep": {**raw["sweep"], **sweep_settings}}
    return build_config(raw, tmp_path / "project")


def test_grid_is_every_combination_in_order_and_trials_caps_it(tmp_path):
    space = {"train.learning_rate": [0.001, 0.01], "model.dropout": [0.1, 0.2, 0.3]}
    grid = sweep.expand_space(_cfg(tmp_path, space=space))
    assert len(grid) == 6
    assert grid[0] == {"train.learning_rate": 0.001, "model.dropout": 0.1}
    assert grid[-1] == {"train.learning_rate": 0.01, "model.dropout": 0.3}
    assert sweep.expand_space(_cfg(tmp_path, space=space, trials=4)) == grid[:4]


def test_random_draws_are_distinct_seeded_settings_from_the_grid(tmp_path):
    space = {"train.learning_rate": [0.001, 0.01, 0.1], "model.dropout": [0.1, 0.2, 0.3]}
    a = sweep.expand_space(_cfg(tmp_path, space=space, method="random", trials=4, seed=3))
    b = sweep.expand_space(_cfg(tmp_path, space=space, method="random", trials=4, seed=3))
    assert a == b and len(a) == 4
    assert len({tuple(s.items()) for s in a}) == 4
    grid = sweep.expand_space(_cfg(tmp_path, space=space))
    assert all(s in grid for s in a)


@pytest.mark.parametrize("space, message", [
    ({}, "sweep.space is empty"),
    ({"train.learnig_rate": [0.1]}, "unknown key(s) in 'train': learnig_rate"),
    ({"model.dropout": [1.5]}, "model.dropout must be in [0, 1)"),
    ({"model.dropout": 0.3}, "must be a non-empty list"),
])
def test_a_bad_space_stops_the_sweep_before_any_training(tmp_path, space, message):
    with pytest.raises(ConfigError, match=None) as err:
        sweep.expand_space(_cfg(tmp_path, space=space))
    assert message in str(err.value)


def test_overrides_replace_dotted_keys_and_keep_the_project_root(tmp_path):
    cfg = _cfg(tmp_path)
    trial = with_overrides(cfg, {"train.learning_rate": 0.01, "train.augment.zoom": 0.0})
    assert trial.train.learning_rate == 0.01 and trial.train.augment.zoom == 0.0
    assert trial.root == cfg.root and trial.landing == cfg.landing
    assert cfg.train.learning_rate != 0.01  # the original is untouched


def test_best_trial_is_the_highest_validation_auc_and_failures_are_listed(tmp_path):
    outcomes = [
        {"trial": 0, "overrides": {"a": 1}, "run_id": "r0", "best_val_auc": 0.90},
        {"trial": 1, "overrides": {"a": 2}, "run_id": "r1", "error": "out of memory"},
        {"trial": 2, "overrides": {"a": 3}, "run_id": "r2", "best_val_auc": 0.95},
        {"trial": 3, "overrides": {"a": 4}, "run_id": "r3", "best_val_auc": 0.95},
    ]
    table = sweep.results_table(outcomes)
    assert table.loc[table["best"], "trial"].tolist() == [2]  # ties go to the earlier trial
    assert table.loc[table["trial"] == 1, "error"].item() == "out of memory"
    assert pd.isna(table.loc[table["trial"] == 1, "best_val_auc"].item())


def test_trials_train_into_runs_nested_under_the_sweep_and_the_best_is_reopened(dataset, tmp_path):
    cfg = load_config(write_params(tmp_path / "project", dataset))
    for name in ("ingest", "validate", "profile"):
        steps.STEPS[name](cfg)
    settings = [{"train.learning_rate": 0.001}, {"train.learning_rate": 0.002}]
    plan = sweep.open_sweep(cfg, settings)
    outcomes = [sweep.run_trial(cfg, plan, i, s) for i, s in enumerate(settings)]
    outcomes.append({"trial": 2, "overrides": {"x": 1}, "run_id": "none", "error": "boom"})
    chosen = sweep.finish_sweep(cfg, plan, outcomes)

    client = mlflow_client(cfg.tracking_uri)
    children = client.search_runs([plan["experiment_id"]], f"tags.`mlflow.parentRunId` = '{plan['sweep_id']}'")
    assert sorted(r.data.params["train.learning_rate"] for r in children) == ["0.001", "0.002"]
    assert all(r.data.metrics["fit_best_val_auc"] == o["best_val_auc"] for r, o in
               zip(sorted(children, key=lambda r: r.data.tags["cxr.sweep.trial"]), outcomes))
    best = max(outcomes[:2], key=lambda o: (o["best_val_auc"], -o["trial"]))
    assert chosen["best_trial"] == best["trial"] and chosen["failed_trials"] == 1
    parent = client.get_run(plan["sweep_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["cxr.sweep.best_run_id"] == best["run_id"]
    assert {a.path for a in client.list_artifacts(plan["sweep_id"], "sweep")} >= {"sweep/trials.png", "sweep/trials.csv"}
    # the chosen trial's run is open again, so evaluate/register log into it
    assert client.get_run(best["run_id"]).info.status == "RUNNING"
    trial_cfg = with_overrides(cfg, chosen["register_overrides"])
    assert (trial_cfg.layout.manifest).is_file()  # shares the sweep's ingest outputs
    steps.evaluate(trial_cfg)
    registration = steps.register(trial_cfg)
    assert registration["run_id"] == best["run_id"]
    history = client.get_metric_history(best["run_id"], "train_loss")
    assert len(history) == len(pd.read_csv(trial_cfg.layout.history))  # curves logged once


def test_a_sweep_where_every_trial_failed_stops_with_the_first_error(dataset, tmp_path):
    cfg = load_config(write_params(tmp_path / "project", dataset))
    plan = sweep.open_sweep(cfg, [{"a": 1}])
    with pytest.raises(CxrError, match="every sweep trial failed; first error: boom"):
        sweep.finish_sweep(cfg, plan, [{"trial": 0, "overrides": {"a": 1}, "run_id": "x", "error": "boom"}])
    assert mlflow_client(cfg.tracking_uri).get_run(plan["sweep_id"]).info.status == "FAILED"
