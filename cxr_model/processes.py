"""Local processes and ports, shared by the flows, the team stack, benchmarks and tests:
start and stop a long-running service, is a pid alive, a free loopback port, wait until a
server's health URL answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cxr_model.errors import CxrError


def pid_alive(pid: int) -> bool:
    """True while a process with this pid runs (also one owned by another user). A zombie counts
    as dead: in containers whose init does not reap orphans, a stopped server lingers as one."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces and parentheses.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no procfs (macOS): the signal check above is all there is


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unanswered(url: str, seconds: float = 5.0) -> str | None:
    """Why nothing answers at `url` (refused, unknown host, timed out), or None when a server
    answers anything at all: auth and path prefixes vary, so any HTTP status counts."""
    try:
        urllib.request.urlopen(url, timeout=seconds).close()
    except urllib.error.HTTPError:
        return None
    except OSError as exc:  # URLError and timeouts are OSErrors
        return str(getattr(exc, "reason", exc))
    return None


def wait_http(name: str, url: str, running: Callable[[], bool], seconds: float) -> None:
    """Return once `url` answers 200; raise CxrError if the server exits or the time runs out."""
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if not running() or time.time() > deadline:
            raise CxrError(f"{name} did not come up at {url} within {seconds:.0f} s")
        time.sleep(0.5)


def wait_service(name: str, url: str, proc: subprocess.Popen, seconds: float, log_path: Path) -> None:
    """`wait_http` for a service started with `start_service`; on failure the error ends with the
    end of its log, which says why."""
    try:
        wait_http(name, url, lambda: proc.poll() is None, seconds)
    except CxrError as exc:
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.is_file() else ""
        raise CxrError(f"{exc} (log {log_path}):\n{tail}") from None


def _default_interrupts() -> None:
    # Runs in the child between fork and exec: exec keeps SIG_DFL but also keeps SIG_IGN.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def start_service(cmd: list[str], log_path: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a server in its own session with SIGINT restored: a shell's background job passes SIGINT on
    ignored, and the Prefect worker stops by sending itself SIGINT, so it would ignore SIGTERM too."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_default_interrupts)


def stop_group(pid: int, seconds: float = 30) -> bool:
    """SIGTERM the process group led by pid; SIGKILL it if the leader still runs after `seconds`.
    True if it stopped by itself (so it could finish its shutdown), False if it had to be killed."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.time() + seconds
    while pid_alive(pid) and time.time() < deadline:
        time.sleep(0.2)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    if not pid_alive(pid):
        return True
    os.killpg(pid, signal.SIGKILL)
    return False
