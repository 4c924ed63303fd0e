"""TensorFlow's import without its two start-up notices, which TF_CPP_MIN_LOG_LEVEL cannot reach:
they are written to file descriptor 2 before TensorFlow's logging starts, and would otherwise
open every `cxr predict` answer a clinician reads. Every other line of stderr is kept."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# Lines holding any of these are dropped; each is informational, printed on every import.
NOTICES = (
    "oneDNN custom operations are on",  # TF_ENABLE_ONEDNN_OPTS's reminder (the speed-up stays on)
    "All log messages before absl::InitializeLog() is called",
)


@contextmanager
def stderr_without(notices: tuple[str, ...] = NOTICES) -> Iterator[None]:
    """Run the block with file descriptor 2 captured, then write back every line not matching."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not any(n in line for n in notices)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class QuietFinder(importlib.abc.MetaPathFinder):
    """Finds one top-level module as Python would, and loads it inside `stderr_without` (once)."""

    def __init__(self, module: str) -> None:
        self.module = module

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module) -> None:
            with stderr_without():
                execute(module)

        spec.loader.exec_module = exec_module
        return spec


_finder = QuietFinder("tensorflow")


def install() -> None:
    """Quiet TensorFlow's first import in this process (a no-op once it is imported)."""
    if "tensorflow" not in sys.modules and _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
