import pytest

from cxr_model import promotion
from cxr_model.config import PromoteConfig
from tests.conftest import mlflow_client

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


@pytest.mark.parametrize("kwargs, reason", [
    ({"val_auc": 0.9}, "validation AUC 0.9000 < gate 0.95"),
    ({"sens": 0.5}, "validation sensitivity 0.5000 < gate 0.9"),
])
def test_failing_gate_blocks_even_the_first_model(kwargs, reason):
    d = promotion.decide(cand(**kwargs), None, GATES)
    assert not d.promote and reason in d.sentence()


def test_apply_moves_the_alias_only_on_promotion(tmp_path):
    client = mlflow_client(f"sqlite:///{tmp_path / 'db.sqlite'}")
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", source=str(tmp_path))
    promotion.apply(client, "m", "1", promotion.Decision(True, ["first"]))
    assert promotion.current_champion(client, "m") == "1"
    promotion.apply(client, "m", "2", promotion.Decision(False, ["worse"]))
    assert promotion.current_champion(client, "m") == "1"
    tags = client.get_model_version("m", "2").tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.reasons"] == "worse"
    assert client.get_model_version("m", "1").tags["promotion.decision"] == "promoted"
