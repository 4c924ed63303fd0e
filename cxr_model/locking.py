"""One pipeline execution at a time per project: executions share artifacts/ and the registry."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from filelock import FileLock, Timeout

from cxr_model.config import Config
from cxr_model.errors import CxrError

log = logging.getLogger("cxr.locking")


@contextlib.contextmanager
def pipeline_lock(cfg: Config) -> Iterator[None]:
    """Hold the project's pipeline lock, waiting up to retrain.lock_timeout_seconds for it."""
    path = cfg.layout.lock
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0.1)
    except Timeout:
        log.info("another pipeline execution holds %s; waiting up to %d s",
                 path, cfg.retrain.lock_timeout_seconds)
        try:
            lock.acquire(timeout=cfg.retrain.lock_timeout_seconds)
        except Timeout:
            raise CxrError(f"another pipeline execution still holds {path} after "
                           f"{cfg.retrain.lock_timeout_seconds} s") from None
    try:
        yield
    finally:
        lock.release()
