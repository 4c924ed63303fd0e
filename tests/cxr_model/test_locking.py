"""One pipeline execution at a time: a second waits for the first, gives up after the timeout,
and the lock never outlives a failed execution."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cxr_model.config import load_config
from cxr_model.errors import CxrError
from cxr_model.locking import pipeline_lock
from tests.conftest import write_params

HOLD = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire(timeout=5)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def _config(tmp_path: Path, timeout: int):
    return load_config(write_params(tmp_path / "project", tmp_path / "landing",
                                    retrain={"lock_timeout_seconds": timeout}))


def _hold(path: Path, seconds: float) -> subprocess.Popen:
    """Another process (another flow run) holding the lock for `seconds`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_execution_waits_for_the_first_then_runs(tmp_path, caplog):
    cfg = _config(tmp_path, timeout=30)
    holder = _hold(cfg.layout.lock, 1.5)
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="cxr.locking"), pipeline_lock(cfg):
        waited = time.monotonic() - start
    holder.wait(timeout=10)
    assert waited >= 1.0
    assert "another pipeline execution holds" in caplog.text


def test_a_second_execution_gives_up_after_the_timeout_naming_the_lock(tmp_path):
    cfg = _config(tmp_path, timeout=1)
    holder = _hold(cfg.layout.lock, 30)
    try:
        start = time.monotonic()
        with pytest.raises(CxrError, match=r"still holds .*\.pipeline\.lock after 1 s"):
            with pipeline_lock(cfg):
                pytest.fail("ran while another execution held the lock")
        assert time.monotonic() - start < 10
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_released_when_an_execution_fails(tmp_path):
    cfg = _config(tmp_path, timeout=0)
    with pytest.raises(RuntimeError, match="training failed"):
        with pipeline_lock(cfg):
            raise RuntimeError("training failed")
    holder = _hold(cfg.layout.lock, 0)  # another process gets it at once
    assert holder.wait(timeout=10) == 0
