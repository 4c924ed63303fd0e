"""The promote stage: champion/challenger on the gates and the evaluation set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cxr_model import arrivals
from cxr_model.config import Config
from cxr_model.stages.common import read_json, readable, readable_pixels, step, write_json

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from cxr_model.prediction import Predictor


@step("promote")
def promote(cfg: Config) -> dict:
    """Move the champion alias to the new version if it passes the gates and the comparison."""
    from cxr_model import data, evaluation, probes, promotion, serving, tracking

    lay = cfg.layout
    reg = read_json(lay.registration)
    metrics = read_json(lay.metrics)
    name, version = reg["registered_model"], str(reg["version"])
    client = tracking.client(cfg)
    champion_version = promotion.current_champion(client, name)
    champion = None
    if champion_version is not None and champion_version != version:
        tags = client.get_model_version(name, champion_version).tags
        size = int(tags.get("image_size", cfg.preprocess.image_size))
        manifest = data.read_manifest(lay.manifest)
        # One decoding of the films at the champion's size (at the pipeline's own, the cache the
        # earlier steps built) serves the test comparison and the new arrivals alike.
        films, pixels = readable(manifest), readable_pixels(cfg, manifest, size)
        in_test = (films["split"] == "test").to_numpy()
        test = films[in_test].reset_index(drop=True)
        predictor = serving.load_predictor(f"models:/{name}/{champion_version}")
        p = predictor.probabilities(pixels[in_test])
        y = (test["label"] == data.LABELS[1]).to_numpy(dtype=int)
        champion = {"version": champion_version, "eval_auc": evaluation.ranking_metrics(y, p)["auc"]}
        scored = pd.read_csv(lay.predictions).set_index("path")["probability"]
        if set(scored.index) == set(test["path"]):  # the candidate's scores of the same films
            champion["difference_ci95"] = evaluation.paired_auc_difference(
                y, scored.loc[test["path"]].to_numpy(float), p, test["patient_id"].to_numpy())
        champion["on_arrivals"] = champion_on_arrivals(client, name, champion_version, films, pixels, predictor)
    candidate = {"val_auc": metrics["val"]["auc"], "val_sensitivity": metrics["val"]["sensitivity"],
                 "eval_auc": metrics["test"]["auc"], "val_aspect_jitter_auc": metrics.get("val_aspect_jitter_auc"),
                 "probe_ratios": probes.normal_ratios(metrics.get("val_probes", {}))}
    decision = promotion.decide(candidate, champion, cfg.promote)
    if champion_version == version:
        decision = promotion.Decision(True, ["already the champion"])
    else:
        promotion.apply(client, name, version, decision)
    client.set_tag(reg["run_id"], "cxr.promotion", decision.sentence()[:5000])
    result = {"version": version, "promoted": decision.promote, "reasons": decision.reasons,
              "previous_champion": champion_version, "comparison": champion,
              "champion": promotion.current_champion(client, name)}
    write_json(lay.promotion, result)
    print(f"{name} version {version} {decision.sentence()}")
    arrived = (champion or {}).get("on_arrivals")
    line = arrivals.summary(arrived, champion_version) if arrived is not None else None
    if champion_version != version:  # a re-run on the champion keeps the note of its decision
        client.set_tag(reg["run_id"], "mlflow.note.content", promotion.run_note(metrics, decision, version, line))
    if arrived is not None:
        print(line)
        tracking.log_metrics_to(cfg, reg["run_id"], "champion_on_arrivals",
                                {**{k: v for k, v in arrived.items() if k != "metrics"}, **arrived.get("metrics", {})})
        if arrived["films"]:  # the registry keeps how the champion fared on each batch it met
            client.set_model_version_tag(name, champion_version, f"arrivals.v{version}", line[:5000])
    return result


def champion_on_arrivals(client: MlflowClient, name: str, champion_version: str, films: pd.DataFrame,
                         pixels: np.ndarray, predictor: Predictor) -> dict | None:
    """The champion scored on the films (readable, numbered as their decoded `pixels`) of patients
    its training manifest did not hold, or None when that manifest is not stored."""
    from cxr_model import data, promotion

    seen = promotion.training_manifest(client, name, champion_version)
    if seen is None:
        return None
    new, left_out = arrivals.new_films(films, seen)
    arrived = pixels[new.index.to_numpy()]
    p = predictor.probabilities(arrived)
    y = (new["label"] == data.LABELS[1]).to_numpy(dtype=int)
    return {**arrivals.champion_figures(y, p, predictor.threshold, arrivals.patient_keys(new).to_numpy()),
            "films_of_known_patients": left_out,
            "film_shift": arrivals.film_shift(predictor.card.get("training_films"), arrived, y)}
