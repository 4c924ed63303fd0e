import signal
import subprocess
import sys
import time

import pytest

from cxr_model.errors import CxrError
from cxr_model.processes import free_port, pid_alive, start_service, stop_group, wait_service
from tests.conftest import ROOT


def test_a_running_process_is_alive_and_an_exited_unreaped_one_is_not():
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert pid_alive(running.pid)
        # Not waited for yet, so it is a zombie: its pid still answers signal 0.
        for _ in range(100):
            if not pid_alive(exited.pid):
                break
            time.sleep(0.05)
        assert not pid_alive(exited.pid)
        assert exited.poll() == 0  # it was a zombie until now, not a reused pid
    finally:
        running.kill()
        running.wait()
        exited.wait()


REPORT_SIGINT = ("import signal, sys; h = signal.getsignal(signal.SIGINT); "
                 "print('default' if h is signal.default_int_handler else 'ignored' if h == signal.SIG_IGN else h)")


def test_a_service_gets_sigint_back_when_launched_with_it_ignored(tmp_path):
    # As from a shell's background job, nohup or some CI steps: SIGINT ignored and inherited.
    ignored = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    plain = subprocess.run([sys.executable, "-c", REPORT_SIGINT], capture_output=True, text=True,
                           preexec_fn=ignored)
    assert plain.stdout.strip() == "ignored"  # the condition the service must overcome
    launcher = (f"import signal, sys; from pathlib import Path; from cxr_model.processes import start_service; "
                f"signal.signal(signal.SIGINT, signal.SIG_IGN); "
                f"start_service([sys.executable, '-c', {REPORT_SIGINT!r}], Path({str(tmp_path / 'svc.log')!r}), "
                f"Path('.'), {{}}).wait()")
    subprocess.run([sys.executable, "-c", launcher], cwd=ROOT, check=True, timeout=60)
    assert (tmp_path / "svc.log").read_text().strip() == "default"


def test_stop_group_reports_a_graceful_stop_and_kills_what_ignores_sigterm(tmp_path):
    log = tmp_path / "svc.log"
    polite = start_service([sys.executable, "-c", "import time; time.sleep(60)"], log, tmp_path, {})
    stubborn = start_service([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                              "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"], log, tmp_path, {})
    try:
        for _ in range(100):  # SIGTERM must arrive after the child ignores it
            if "ready" in log.read_text():
                break
            time.sleep(0.05)
        assert stop_group(polite.pid, seconds=10) is True
        assert stop_group(stubborn.pid, seconds=1) is False
        for _ in range(100):  # stop_group reaps what it can; SIGKILL takes a moment to land
            if not pid_alive(stubborn.pid):
                break
            time.sleep(0.05)
        assert not pid_alive(polite.pid) and not pid_alive(stubborn.pid)
    finally:
        for proc in (polite, stubborn):
            proc.kill()
            proc.wait()


def test_a_service_that_dies_at_start_is_reported_with_the_end_of_its_log(tmp_path):
    log = tmp_path / "server.log"
    proc = start_service([sys.executable, "-c", "import sys; print('port 1 already in use'); sys.exit(3)"],
                         log, tmp_path, {})
    with pytest.raises(CxrError) as err:
        wait_service("the server", f"http://127.0.0.1:{free_port()}/health", proc, 30, log)
    message = str(err.value)
    assert "the server did not come up" in message and str(log) in message
    assert message.rstrip().endswith("port 1 already in use")
