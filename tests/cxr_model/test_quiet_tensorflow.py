"""TensorFlow's start-up notices are dropped from stderr; everything else written there is kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cxr_model.quiet_tensorflow import NOTICES, QuietFinder, stderr_without
from tests.conftest import ROOT

NOTICE = f"I0000 port.cc:153] {NOTICES[0]}. You may see slightly different numerical results\n"


def test_drops_notices_at_the_descriptor_and_keeps_other_lines(capfd):
    with stderr_without():
        os.write(2, NOTICE.encode())
        os.write(2, b"E0000 a real error from C++\n")
        print("a Python warning", file=sys.stderr)
    err = capfd.readouterr().err
    assert NOTICES[0] not in err
    assert "E0000 a real error from C++" in err
    assert "a Python warning" in err


@pytest.fixture
def noisy_package(tmp_path, monkeypatch):
    """A top-level package that writes a notice and a real line to descriptor 2 when imported,
    and fails its import if asked to."""
    name = "cxr_noisy_test_pkg"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(textwrap.dedent(f"""
        import os
        os.write(2, {NOTICE.encode()!r})
        os.write(2, b"kept: loaded\\n")
        if os.environ.get("CXR_NOISY_FAIL"):
            raise ImportError("broken install")
        VALUE = 7
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    finder = QuietFinder(name)
    sys.meta_path.insert(0, finder)
    yield name
    sys.modules.pop(name, None)
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)


def test_the_finder_quiets_the_import_once_and_steps_aside(noisy_package, capfd):
    module = __import__(noisy_package)
    err = capfd.readouterr().err
    assert module.VALUE == 7
    assert NOTICES[0] not in err and "kept: loaded" in err
    assert not any(isinstance(f, QuietFinder) and f.module == noisy_package for f in sys.meta_path)


def test_a_failing_import_still_raises_and_restores_stderr(noisy_package, capfd, monkeypatch):
    monkeypatch.setenv("CXR_NOISY_FAIL", "1")
    with pytest.raises(ImportError, match="broken install"):
        __import__(noisy_package)
    os.write(2, b"after the failure\n")
    err = capfd.readouterr().err
    assert "kept: loaded" in err and "after the failure" in err


def test_importing_the_library_prints_no_tensorflow_notice():
    done = subprocess.run([sys.executable, "-c", "import cxr_model.model"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not any(notice in done.stderr for notice in NOTICES), done.stderr
