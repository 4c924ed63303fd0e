import pytest

from cxr_model import cli, promotion
from cxr_model.config import PromoteConfig, load_config
from cxr_model.errors import CxrError
from tests.conftest import mlflow_client, write_params

GATES = PromoteConfig(min_val_auc=0.95, min_val_sensitivity=0.9, max_auc_drop=0.005)


def cand(val_auc=0.99, sens=0.95, eval_auc=0.97):
    return {"val_auc": val_auc, "val_sensitivity": sens, "eval_auc": eval_auc}


def test_first_passing_model_becomes_champion():
    d = promotion.decide(cand(), None, GATES)
    assert d.promote and "no current champion" in d.sentence()


def test_better_or_slightly_worse_model_is_promoted():
    assert promotion.decide(cand(eval_auc=0.98), {"version": "1", "eval_auc": 0.97}, GATES).promote
    assert promotion.decide(cand(eval_auc=0.966), {"version": "1", "eval_auc": 0.97}, GATES).promote


def test_worse_model_is_kept_out_with_the_reason():
    d = promotion.decide(cand(eval_auc=0.95), {"version": "4", "eval_auc": 0.97}, GATES)
    assert not d.promote
    assert "champion v4 0.9700: worse by 0.0200 > margin 0.005" in d.sentence()


def test_the_paired_interval_is_reported_beside_the_margin_and_never_decides():
    paired = {"difference": -0.008, "low": -0.0150, "high": -0.0010}
    d = promotion.decide(cand(eval_auc=0.962), {"version": "4", "eval_auc": 0.97, "difference_ci95": paired}, GATES)
    assert not d.promote  # the margin decides, as without the interval
    assert "(difference -0.0080, 95 % CI -0.0150 to -0.0010 over resampled patients): worse by 0.0080" in d.sentence()
    same = {"difference": -1e-17, "low": -1e-17, "high": 0.0}  # one model twice, rounding apart
    d = promotion.decide(cand(eval_auc=0.97), {"version": "4", "eval_auc": 0.97 + 1e-17, "difference_ci95": same},
                         GATES)
    assert "(difference +0.0000, 95 % CI +0.0000 to +0.0000 over resampled patients)" in d.sentence()
    noise = {"difference": -0.008, "low": -0.02, "high": 0.004}
    assert not promotion.decide(cand(eval_auc=0.962), {"version": "4", "eval_auc": 0.97, "difference_ci95": noise},
                                GATES).promote


@pytest.mark.parametrize("kwargs, reason", [
    ({"val_auc": 0.9}, "validation AUC 0.9000 < gate 0.95"),
    ({"sens": 0.5}, "validation sensitivity 0.5000 < gate 0.9"),
])
def test_failing_gate_blocks_even_the_first_model(kwargs, reason):
    d = promotion.decide(cand(**kwargs), None, GATES)
    assert not d.promote and reason in d.sentence()


SHORTCUT_GATES = PromoteConfig(min_val_auc=0.95, min_val_sensitivity=0.9, max_auc_drop=0.005,
                               max_probe_ratio=2.0, max_aspect_jitter_drop=0.02)


def test_shortcut_gates_block_a_model_leaning_on_how_the_site_takes_its_films():
    robust = {**cand(), "probe_ratios": {"crop_80": 1.6, "taller_85": 1.5}, "val_aspect_jitter_auc": 0.985}
    d = promotion.decide(robust, None, SHORTCUT_GATES)
    assert d.promote and "largest shortcut probe crop_80 1.60x, 0.0050 lower with the aspect scrambled" in d.sentence()
    squash = {**robust, "probe_ratios": {"crop_80": 1.6, "taller_85": 5.25}, "val_aspect_jitter_auc": 0.945}
    d = promotion.decide(squash, None, SHORTCUT_GATES)
    assert not d.promote
    assert "shortcut probe taller_85: validation NORMAL films score 5.25x > gate 2.0" in d.sentence()
    assert "validation AUC falls 0.0450 with the aspect scrambled > gate 0.02" in d.sentence()
    assert "crop_80" not in d.sentence()
    # Gates off (0): the same model passes; gates on without the figures: refused, with why.
    assert promotion.decide(squash, None, GATES).promote
    d = promotion.decide(cand(), None, SHORTCUT_GATES)
    assert not d.promote and "no shortcut probes recorded" in d.sentence()
    assert "no aspect-jittered validation AUC recorded" in d.sentence()


def registry_with_versions(tmp_path, versions: int):
    """A throwaway registry holding model "m" with this many versions."""
    client = mlflow_client(f"sqlite:///{tmp_path / 'db.sqlite'}")
    client.create_registered_model("m")
    for _ in range(versions):
        client.create_model_version("m", source=str(tmp_path))
    return client


def test_apply_moves_the_alias_only_on_promotion(tmp_path):
    client = registry_with_versions(tmp_path, 2)
    promotion.apply(client, "m", "1", promotion.Decision(True, ["first"]))
    assert promotion.current_champion(client, "m") == "1"
    promotion.apply(client, "m", "2", promotion.Decision(False, ["worse"]))
    assert promotion.current_champion(client, "m") == "1"
    tags = client.get_model_version("m", "2").tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.reasons"] == "worse"
    assert client.get_model_version("m", "1").tags["promotion.decision"] == "promoted"


def test_hand_promotion_overrides_a_rejection_and_records_why(tmp_path):
    client = registry_with_versions(tmp_path, 2)
    promotion.apply(client, "m", "1", promotion.Decision(True, ["first"]))
    promotion.apply(client, "m", "2", promotion.Decision(False, ["worse on test"]))
    assert promotion.promote_by_hand(client, "m", "2", " new default ") == "1"
    assert promotion.current_champion(client, "m") == "2"
    tags = client.get_model_version("m", "2").tags
    assert tags["promotion.decision"] == "promoted"
    assert tags["promotion.reasons"] == "promoted by hand: new default; previous champion v1"


@pytest.mark.parametrize("version, reason, message", [
    ("7", "why", "has no version 7"),
    ("1", "  ", "needs a reason"),
])
def test_hand_promotion_refuses_unknown_versions_and_missing_reasons(tmp_path, version, reason, message):
    client = registry_with_versions(tmp_path, 1)
    with pytest.raises(CxrError, match=message):
        promotion.promote_by_hand(client, "m", version, reason)
    assert promotion.current_champion(client, "m") is None


def test_cli_champion_moves_the_alias_in_the_projects_store(tmp_path, capsys):
    params = write_params(tmp_path, tmp_path / "landing")
    cfg = load_config(params)
    (tmp_path / "mlruns").mkdir()
    client = mlflow_client(cfg.tracking_uri)
    client.create_registered_model(cfg.mlflow.registered_model)
    client.create_model_version(cfg.mlflow.registered_model, source=str(tmp_path))
    argv = ["--params", str(params), "champion", "1", "--reason", "deliberate change of default"]
    assert cli.main(argv) == 0
    assert "v1 is champion (previous: none)" in capsys.readouterr().out
    assert promotion.current_champion(client, cfg.mlflow.registered_model) == "1"
    assert cli.main(["--params", str(params), "champion", "2", "--reason", "x"]) == 1
    assert "has no version 2" in capsys.readouterr().err
