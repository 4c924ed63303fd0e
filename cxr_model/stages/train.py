"""The train stage: the CNN, its per-epoch history and curves."""

from __future__ import annotations

from cxr_model.config import Config
from cxr_model.stages.common import split_arrays, step, write_json


@step("train")
def train(cfg: Config) -> dict:
    """Fit the CNN; write the model, the per-epoch history and the training curves."""
    from cxr_model import plots, training

    lay = cfg.layout
    arrays = split_arrays(cfg)
    result = training.fit(arrays["train"], arrays["val"], cfg, lay.checkpoint)
    tmp = lay.model.with_name("model.tmp.keras")
    result.model.save(tmp)
    tmp.replace(lay.model)
    result.history.to_csv(lay.history, index=False)
    plots.training_curves(result.history, lay.training_curves, result.member_best_epochs)
    summary = {
        "epochs_run": len(result.history), "best_epoch": result.best_epoch,
        "ensemble_members": max(cfg.model.ensemble, cfg.model.towers),  # the CNNs the model averages
        "member_best_epochs": list(result.member_best_epochs),
        "best_val_auc": result.best_val_auc, "train_seconds": round(result.seconds, 1),
        "train_images_per_second": round(result.images_per_second, 1),
        "train_images": len(arrays["train"]), "val_images": len(arrays["val"]),
    }
    write_json(lay.train_summary, summary)
    return summary
