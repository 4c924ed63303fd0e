"""Dataset versions: what import-data refuses, how a version is read, and that a missing DVC
remote does not lose an import."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cxr_model.config import load_config
from cxr_model.errors import DataError
from cxr_model.versioning import dataset_version, dvc_file, import_landing
from tests.conftest import make_dataset, write_params

DVC = str(Path(sys.executable).with_name("dvc"))


def _config(tmp_path: Path, landing: Path, versioned: bool = True):
    params = write_params(tmp_path / "project", landing)
    raw = yaml.safe_load(params.read_text())
    raw["data"]["versioned"] = versioned
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(params)


def test_version_is_the_dvc_directory_hash_or_says_why_there_is_none(tmp_path):
    cfg = _config(tmp_path, tmp_path / "landing")
    assert dataset_version(cfg) == "unversioned"  # no .dvc file yet
    dvc_file(cfg).parent.mkdir(parents=True, exist_ok=True)
    dvc_file(cfg).write_text(yaml.safe_dump({"outs": [{"md5": "abc123.dir", "path": "chest_xray"}]}))
    assert dataset_version(cfg) == "abc123.dir"
    assert dataset_version(_config(tmp_path, tmp_path / "landing", versioned=False)) == "unversioned"


def test_import_refuses_what_it_cannot_version(tmp_path):
    with pytest.raises(DataError, match="reads the landing folder in place"):
        import_landing(_config(tmp_path, tmp_path / "landing", versioned=False))
    with pytest.raises(DataError, match="not in the Kaggle layout.*CXR_DATA"):
        import_landing(_config(tmp_path, tmp_path / "nowhere"))
    landing = make_dataset(tmp_path / "landing", normal_patients=2, pneumonia_patients=2, test_patients=1)
    with pytest.raises(DataError, match="not a DVC project"):
        import_landing(_config(tmp_path, landing))


def test_import_without_a_reachable_remote_still_records_the_version(tmp_path, caplog):
    landing = make_dataset(tmp_path / "landing", normal_patients=2, pneumonia_patients=2, test_patients=1)
    cfg = _config(tmp_path, landing)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=cfg.root, env=env, check=True)
    subprocess.run([DVC, "config", "core.analytics", "false"], cwd=cfg.root, env=env, check=True)
    with caplog.at_level(logging.INFO, logger="cxr.versioning"):
        first = import_landing(cfg)
    assert first["changed"] and first["previous"] == "unversioned"
    assert first["version"] == dataset_version(cfg) != "unversioned"
    assert "could not push to the DVC remote" in caplog.text  # no remote configured: a warning only
    assert sorted(p.name for p in (cfg.dvc_data / "train").iterdir()) == ["NORMAL", "PNEUMONIA"]

    again = import_landing(cfg)
    assert not again["changed"] and again["version"] == first["version"]
