import subprocess
import sys
import time

from cxr_model.processes import pid_alive


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
