"""Shared e2e fixtures: a small real subset of the X-rays, and one finished training flow on it
that several modules (flow, prediction, serving) inspect."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from cxr_model.config import load_config
from cxr_model.errors import CxrError
from cxr_model.processes import free_port, wait_http
from tests.conftest import REAL_DATA, ROOT, write_params


def real_subset(dest: Path, train_per_class: int = 40, test_per_class: int = 15) -> Path:
    """Copy an evenly spaced selection of real images into the Kaggle layout."""
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for label in ("NORMAL", "PNEUMONIA"):
            files = sorted((REAL_DATA / split / label).iterdir())
            step = max(1, len(files) // n)
            (dest / split / label).mkdir(parents=True)
            for f in files[::step][:n]:
                shutil.copy(f, dest / split / label / f.name)
    return dest


def clean_env(prefect_api: str | None = None) -> dict:
    """The environment of a flow subprocess: no user CXR_/MLflow settings; a shared Prefect
    server when given, else Prefect's temporary per-process server (what `make run` uses)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "MLFLOW_", "PREFECT_API_URL"))}
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    return env


def run_flow(params: Path, prefect_api: str | None = None, prefect_home: Path | None = None
             ) -> subprocess.CompletedProcess:
    env = clean_env(prefect_api)
    if prefect_home:
        env["PREFECT_HOME"] = str(prefect_home)
    return subprocess.run(
        [sys.executable, "-m", "flows.training", "--params", str(params)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )


@contextlib.contextmanager
def running(name: str, cmd: list[str], env: dict, health_url: str, log: Path, seconds: float = 180,
            cwd: Path | None = None) -> Iterator[None]:
    """Start a server process (output to `log`), wait until `health_url` answers 200, stop it after."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            try:
                wait_http(name, health_url, lambda: proc.poll() is None, seconds)
            except CxrError as exc:
                pytest.fail(f"{exc}: {log.read_text()[-3000:]}")
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """One Prefect server on loopback for the session's flow subprocesses: a temporary server
    per process costs about 13 s each and can time out when two start at once on 2 cores."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    cmd = [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with running("prefect server", cmd, {**clean_env(), "PREFECT_HOME": str(home)}, url + "/health",
                 home / "server.log", seconds=120):
        yield url


def _small(tmp_path: Path, source: Path) -> Path:
    return write_params(tmp_path / "project", source, preprocess={"image_size": 64},
                        model={"filters": [8, 16, 32], "dense_units": 16})


def _shared_dir(tmp_path_factory) -> Path:
    """The folder every pytest-xdist worker of this run sees (each worker's own base is below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """One real-subset flow per test run, even across xdist workers: the first worker to ask
    builds it under a file lock while the others wait, then all read the same project."""
    shared = _shared_dir(tmp_path_factory)
    tmp, outcome = shared / "finished-flow", shared / "finished-flow.json"
    with FileLock(str(shared / "finished-flow.lock")):
        if not outcome.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # a worker that died mid-build
            tmp.mkdir()
            params = _small(tmp, real_subset(tmp / "landing"))
            # An empty PREFECT_HOME, as on a machine that never ran Prefect: the temporary server
            # must create its database first (`make run` on a fresh machine).
            proc = run_flow(params, prefect_home=tmp / "fresh-prefect-home")
            outcome.write_text(json.dumps({"params": str(params), "args": proc.args, "returncode": proc.returncode,
                                           "stdout": proc.stdout, "stderr": proc.stderr}))
    built = json.loads(outcome.read_text())
    proc = subprocess.CompletedProcess(built["args"], built["returncode"], built["stdout"], built["stderr"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return load_config(Path(built["params"])), proc
