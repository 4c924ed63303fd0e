"""Dataset versions: bring the landing folder in as a DVC-tracked copy (via the `dvc` command)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cxr_model.config import Config
from cxr_model.errors import DataError

log = logging.getLogger("cxr.versioning")


def dvc_file(cfg: Config) -> Path:
    return cfg.dvc_data.with_name(cfg.dvc_data.name + ".dvc")


def dataset_version(cfg: Config) -> str:
    """DVC hash of the dataset the pipeline reads ('unversioned' when read in place)."""
    path = dvc_file(cfg)
    if not cfg.data.versioned or not path.is_file():
        return "unversioned"
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "unknown"))


def _dvc_command() -> list[str]:
    exe = Path(sys.executable).with_name("dvc")
    return [str(exe)] if exe.exists() else [shutil.which("dvc") or "dvc"]


def _dvc(cfg: Config, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*_dvc_command(), *args], cwd=cfg.root, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise DataError(f"`dvc {' '.join(args)}` failed: {detail[-1] if detail else 'no output'}")
    return proc


def _recorded_path(cfg: Config) -> str | None:
    """The landing path as the committed .dvc file spells it (relative to data/)."""
    path = dvc_file(cfg)
    if not path.is_file():
        return None
    deps = (yaml.safe_load(path.read_text()) or {}).get("deps") or [{}]
    return deps[0].get("path")


def import_landing(cfg: Config) -> dict:
    """New DVC dataset version when the landing folder changed; restore the copy when missing.

    Returns the version (the DVC directory hash) before and after, so callers can tell whether
    new data arrived.
    """
    if not cfg.data.versioned:
        raise DataError("data.versioned is false: the pipeline reads the landing folder in place")
    landing = cfg.landing
    if not (landing / "train").is_dir():
        raise DataError(f"landing folder not found or not in the Kaggle layout: {landing} "
                        "(set CXR_DATA or data.landing)")
    if not (cfg.root / ".dvc").is_dir():
        raise DataError(f"{cfg.root} is not a DVC project (run `dvc init` there)")
    before = dataset_version(cfg)
    target = cfg.dvc_data
    recorded = _recorded_path(cfg)
    same_source = recorded is not None and (target.parent / recorded).resolve() == landing.resolve()
    # Keep the committed spelling when it names the same folder, so the .dvc file only changes
    # when the data does.
    rel = recorded if same_source else os.path.relpath(landing, target.parent)
    if not same_source or not target.exists():
        log.info("import-data: importing %s -> %s", landing, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        _dvc(cfg, "import-url", "--force", rel, str(target.relative_to(cfg.root)))
    else:
        log.info("import-data: checking %s for new images", landing)
        _dvc(cfg, "update", str(dvc_file(cfg).relative_to(cfg.root)))
    after = dataset_version(cfg)
    changed = after != before
    if changed:
        log.info("import-data: new dataset version %s (was %s); commit %s to record it",
                 after, before, dvc_file(cfg).relative_to(cfg.root))
    else:
        log.info("import-data: dataset unchanged (version %s)", after)
    try:
        _dvc(cfg, "push", str(dvc_file(cfg).relative_to(cfg.root)))
        log.info("import-data: pushed to the DVC remote")
    except DataError as exc:
        log.warning("import-data: could not push to the DVC remote: %s", exc)
    return {"version": after, "previous": before, "changed": changed, "landing": str(landing)}
