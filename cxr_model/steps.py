"""The pipeline steps by name: each reads declared files and writes declared files, and is
called alike by the Prefect tasks and by the `cxr <step>` commands that dvc.yaml runs. The code of
each lives in cxr_model/stages/, one module per stage, so that dvc.yaml names the code each stage
runs; this module names them, and holds the two helpers the flows use around them."""

from __future__ import annotations

from typing import Callable

from cxr_model.config import Config
from cxr_model.stages.evaluate import evaluate
from cxr_model.stages.ingest import import_data, ingest
from cxr_model.stages.profile import profile
from cxr_model.stages.promote import promote
from cxr_model.stages.register import register
from cxr_model.stages.train import train
from cxr_model.stages.validate import validate


def start_tracking(cfg: Config, kind: str) -> dict:
    """Close runs left open by killed processes, then open this execution's run."""
    from cxr_model import tracking

    swept = tracking.sweep_killed_runs(cfg)
    return {"run_id": tracking.open_run(cfg, kind), "killed_runs_closed": swept}


def retrain_decision(cfg: Config, fingerprint: str) -> tuple[bool, str]:
    """Whether the data with this fingerprint calls for training, and why: not when the champion
    was trained on it, nor when these settings already gave a rejected version on it."""
    from cxr_model import promotion, tracking

    client = tracking.client(cfg)
    name = cfg.mlflow.registered_model
    champion = promotion.current_champion(client, name)
    tags = {str(v.version): v.tags for v in client.search_model_versions(f"name='{name}'")}
    if champion is not None and tags.get(champion, {}).get("dataset_fingerprint") == fingerprint:
        return False, f"data unchanged since the champion (version {champion}) was trained"
    tried = (fingerprint, cfg.settings_fingerprint(), "rejected")
    for version, t in tags.items():
        if (t.get("dataset_fingerprint"), t.get("settings_fingerprint"), t.get("promotion.decision")) == tried:
            return False, (f"version {version} was trained on this data with these settings "
                           "and not promoted; change the data or params.yaml, or --force")
    return True, "no champion yet" if champion is None else "new data"


STEPS: dict[str, Callable[[Config], dict]] = {
    "import-data": import_data, "ingest": ingest, "validate": validate, "profile": profile,
    "train": train, "evaluate": evaluate, "register": register, "promote": promote,
}
