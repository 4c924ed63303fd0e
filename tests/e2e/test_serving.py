"""The registered champion used as clinicians' tools would: `cxr predict` and `mlflow models serve`
over HTTP, on real X-rays from the finished e2e flow."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import REAL_DATA, ROOT
from tests.e2e.conftest import free_port, running
from tests.dicom_files import dicom_bytes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data not found at {REAL_DATA}"),
]


def _post(url: str, rows: list[str]) -> tuple[int, dict]:
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[r] for r in rows]}}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def pipeline_predictions(finished):
    """Test-split probabilities the evaluate step computed from the training-time array cache."""
    cfg, _ = finished
    frame = pd.read_csv(cfg.layout.predictions)
    return cfg, frame.set_index("path")["probability"]


@pytest.fixture(scope="module")
def server(finished):
    cfg, _ = finished
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # mlflow starts uvicorn from PATH, as in an activated venv
    env = {**os.environ, "MLFLOW_TRACKING_URI": cfg.tracking_uri, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", "models:/cxr-pneumonia@champion",
           "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running("mlflow models serve", cmd, env, url + "/ping", cfg.root / "serve.log", cwd=cfg.root):
        yield url


def test_served_model_scores_a_real_xray_and_refuses_bad_uploads(server, pipeline_predictions):
    cfg, expected = pipeline_predictions
    path = expected.index[0]
    xray = base64.b64encode((cfg.data_source / path).read_bytes()).decode()
    notes = base64.b64encode(b"Patient notes: cough for three days.").decode()
    status, body = _post(server + "/invocations", [xray, notes])
    assert status == 200, body
    first, second = body["predictions"]
    # the same probability the pipeline computed from its training-time array cache
    assert first["probability"] == pytest.approx(expected.iloc[0], abs=1e-5)
    assert first["label"] in ("NORMAL", "PNEUMONIA") and first["error"] is None
    assert first["borderline"] in (True, False) and second["borderline"] is None
    assert second["probability"] is None and "not a usable image" in second["error"]

    big = "A" * (cfg.predict.max_image_bytes * 4 // 3 + 4)
    status, body = _post(server + "/invocations", [big])
    assert status == 200 and "exceeds" in body["predictions"][0]["error"]

    req = urllib.request.Request(server + "/invocations", data=b'{"dataframe_split": {"columns": ["x"], '
                                 b'"data": [["a"]]}}', headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 400 and "image" in err.value.read().decode()


def test_cli_predicts_real_films_in_every_format_like_the_pipeline(finished, pipeline_predictions, tmp_path):
    cfg, expected = pipeline_predictions
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    chosen = list(expected.index[:4])
    for p in chosen:
        (inbox / Path(p).name).write_bytes((cfg.data_source / p).read_bytes())
    gray = np.asarray(Image.open(cfg.data_source / chosen[0]).convert("L"))
    (inbox / "same_film.dcm").write_bytes(dicom_bytes(255 - gray, "MONOCHROME1"))
    out = tmp_path / "out"
    proc = subprocess.run([str(Path(sys.executable).with_name("cxr")), "--params", str(cfg.root / "params.yaml"),
                           "predict", str(inbox), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "MLFLOW_"))})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_csv(out / "predictions.csv")
    rows.index = [Path(p).name for p in rows["path"]]
    for p in chosen:
        assert rows.loc[Path(p).name, "probability"] == pytest.approx(expected[p], abs=1e-5)
        assert Path(rows.loc[Path(p).name, "heatmap"]).is_file()
    assert rows.loc["same_film.dcm", "probability"] == pytest.approx(expected[chosen[0]], abs=2e-3)
    assert "Decision support only" in proc.stdout


def test_cli_assesses_a_real_cohort_like_the_evaluate_step(finished, tmp_path):
    cfg, _ = finished
    out = tmp_path / "assessed"
    proc = subprocess.run([str(Path(sys.executable).with_name("cxr")), "--params", str(cfg.root / "params.yaml"),
                           "assess", str(cfg.data_source / "test"), "--name", "real-test", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "MLFLOW_"))})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "metrics.json").read_text())
    metrics = json.loads(cfg.layout.metrics.read_text())
    scored = pd.read_csv(out / "predictions.csv")
    assert scored["error"].isna().all()
    evaluated = pd.read_csv(cfg.layout.predictions).set_index("path")["probability"]
    scored.index = [str(Path(p).relative_to(cfg.data_source)) for p in scored["path"]]
    # Every evaluated film gets the evaluate step's probability (ingest drops exact duplicates only).
    assert set(evaluated.index) <= set(scored.index) and len(scored) >= metrics["counts"]["test"]
    np.testing.assert_allclose(scored.loc[evaluated.index, "probability"], evaluated, atol=1e-5)
    assert report["count"] == len(scored)
    assert "real-test:" in proc.stdout and "MLflow run" in proc.stdout
