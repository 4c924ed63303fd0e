"""The team stack on one host: PostgreSQL, an MLflow tracking server on it, a Prefect server and a
process worker. Started, checked and stopped through pid files under team.state_dir."""

from __future__ import annotations

import glob
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from cxr_model.config import Config
from cxr_model.errors import CxrError
from cxr_model.processes import pid_alive, start_service, stop_group, wait_service

log = logging.getLogger("cxr.stack")

USER = "cxr"  # PostgreSQL role owning the mlflow and prefect databases
DATABASES = ("mlflow", "prefect")


@dataclass(frozen=True)
class Stack:
    """Where the stack keeps its state and how clients reach it."""

    cfg: Config

    @property
    def state(self) -> Path:
        return self.cfg._resolve(self.cfg.team.state_dir)

    @property
    def pg_dir(self) -> Path:
        return self.state / "postgres"

    @property
    def local_host(self) -> str:
        """How this host reaches the servers (health checks)."""
        host = self.cfg.team.host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    @property
    def client_host(self) -> str:
        """How clients reach the servers: team.public_host when other machines use them."""
        return self.cfg.team.public_host or self.local_host

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.client_host}:{self.cfg.team.mlflow_port}"

    @property
    def prefect_api(self) -> str:
        return f"http://{self.client_host}:{self.cfg.team.prefect_port}/api"

    def local_url(self, port: int, path: str) -> str:
        return f"http://{self.local_host}:{port}{path}"

    def db_url(self, database: str, driver: str = "postgresql", password: str = "") -> str:
        """SQLAlchemy URL of one database; without a password, libpq takes it from the passfile."""
        login = f"{USER}:{password}" if password else USER
        return f"{driver}://{login}@127.0.0.1:{self.cfg.team.postgres_port}/{database}"

    def client_env(self) -> dict[str, str]:
        """What every cxr command needs to use the stack."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "PREFECT_API_URL": self.prefect_api}


# -- processes -----------------------------------------------------------------------------

def _pid_file(stack: Stack, name: str) -> Path:
    return stack.state / f"{name}.pid"


def running_pid(stack: Stack, name: str) -> int | None:
    """Pid of a service this stack started, if it is still alive."""
    path = _pid_file(stack, name)
    if not path.is_file():
        return None
    pid = int(path.read_text().strip() or 0)
    return pid if pid and pid_alive(pid) else None


def _spawn(stack: Stack, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    proc = start_service(cmd, stack.state / f"{name}.log", stack.cfg.root, env)
    _pid_file(stack, name).write_text(str(proc.pid))
    return proc


def _wait_up(stack: Stack, name: str, url: str, proc: subprocess.Popen, seconds: float) -> None:
    wait_service(name, url, proc, seconds, stack.state / f"{name}.log")


# -- PostgreSQL ----------------------------------------------------------------------------

def postgres_bin() -> Path:
    """Folder of initdb/pg_ctl; installs Debian's postgresql package when root and it is missing."""
    found = shutil.which("initdb") or (sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [None])[-1]
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log.info("stack: PostgreSQL server not installed; installing Debian's postgresql package")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], env=env, check=False)
        found = (sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [None])[-1]
    if found is None:
        raise CxrError("PostgreSQL server programs (initdb, pg_ctl) not found: install the postgresql "
                       "package (Debian/Ubuntu: apt-get install postgresql)")
    return Path(found).resolve().parent


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the postgres system user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _password(stack: Stack) -> str:
    """The cxr role's password: $CXR_PG_PASSWORD, else one generated once and kept (mode 600)."""
    path = stack.state / "pg-password"
    if os.environ.get("CXR_PG_PASSWORD"):
        return os.environ["CXR_PG_PASSWORD"]
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def passfile(stack: Stack) -> Path:
    """A libpq password file, so the password never appears in a process list."""
    path = stack.state / "pgpass"
    path.write_text(f"127.0.0.1:{stack.cfg.team.postgres_port}:*:{USER}:{_password(stack)}\n")
    path.chmod(0o600)
    return path


def _psql(stack: Stack, sql: str, database: str = "postgres") -> str:
    cmd = [str(postgres_bin() / "psql"), "-h", str(stack.pg_dir), "-p", str(stack.cfg.team.postgres_port),
           "-U", USER, "-d", database, "-tAc", sql]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise CxrError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def start_postgres(stack: Stack) -> None:
    """A private cluster under state_dir, listening on loopback; databases created if missing."""
    bindir, data, port = postgres_bin(), stack.pg_dir / "data", stack.cfg.team.postgres_port
    stack.pg_dir.mkdir(parents=True, exist_ok=True)
    _give_to_server_user(stack.pg_dir)
    if os.geteuid() == 0 and subprocess.run(_as_server_user(["test", "-w", str(stack.pg_dir)])).returncode:
        raise CxrError(f"the postgres system user cannot write {stack.pg_dir}: put team.state_dir on a "
                       "path every user can traverse")
    if not (data / "PG_VERSION").is_file():
        pwfile = stack.pg_dir / "initial-password"
        pwfile.write_text(_password(stack) + "\n")
        pwfile.chmod(0o600)
        _give_to_server_user(pwfile)
        out = subprocess.run(_as_server_user([
            str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "-E", "UTF8",
            "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"]), capture_output=True, text=True)
        pwfile.unlink()
        if out.returncode != 0:
            raise CxrError(f"initdb failed for {data}: {out.stderr.strip()[-1500:]}")
    status = subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "status"]),
                            capture_output=True)
    if status.returncode != 0:
        options = f"-p {port} -k {stack.pg_dir} -c listen_addresses=127.0.0.1"
        out = subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-l",
                                              str(stack.pg_dir / "postgres.log"), "-w", "-t", "60",
                                              "-o", options, "start"]), capture_output=True, text=True)
        if out.returncode != 0:
            tail = (stack.pg_dir / "postgres.log").read_text(errors="replace")[-1500:]
            raise CxrError(f"PostgreSQL did not start on port {port}: {out.stdout.strip()} {tail}")
    for name in DATABASES:
        if _psql(stack, f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            _psql(stack, f'CREATE DATABASE "{name}" OWNER "{USER}"')


def stop_postgres(stack: Stack) -> None:
    data = stack.pg_dir / "data"
    if (data / "PG_VERSION").is_file():
        subprocess.run(_as_server_user([str(postgres_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                                        "stop"]), capture_output=True)


# -- MLflow, Prefect, worker ---------------------------------------------------------------

def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def start_mlflow(stack: Stack) -> None:
    """Tracking server on PostgreSQL; it stores and serves artifacts, so clients need only its URL."""
    if running_pid(stack, "mlflow"):
        return
    artifacts = stack.state / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    team = stack.cfg.team
    env = {**os.environ, "PGPASSFILE": str(passfile(stack))}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [_bin("mlflow"), "server", "--backend-store-uri", stack.db_url("mlflow"),
           "--artifacts-destination", str(artifacts), "--serve-artifacts",
           "--host", team.host, "--port", str(team.mlflow_port), "--workers", "2"]
    if team.public_host:  # the name other machines use must pass MLflow's Host-header check
        port = team.mlflow_port
        cmd += ["--allowed-hosts", f"{team.public_host},{team.public_host}:{port},localhost,localhost:{port},"
                                   f"127.0.0.1,127.0.0.1:{port},10.*,192.168.*,172.*"]
    proc = _spawn(stack, "mlflow", cmd, env)
    _wait_up(stack, "mlflow", stack.local_url(team.mlflow_port, "/health"), proc, 180)


def start_prefect(stack: Stack) -> None:
    """Prefect server (API + UI); its database on the same PostgreSQL unless configured otherwise."""
    if running_pid(stack, "prefect"):
        return
    team = stack.cfg.team
    home = stack.state / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": "",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_API_URL": f"{stack.prefect_api}"}
    if team.postgres_for_prefect:
        # asyncpg reads no passfile: the password goes in the server's environment, not its argv.
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = stack.db_url("prefect", "postgresql+asyncpg",
                                                                     _password(stack))
    proc = _spawn(stack, "prefect", [_bin("prefect"), "server", "start", "--host", team.host,
                                     "--port", str(team.prefect_port)], env)
    _wait_up(stack, "prefect", stack.local_url(team.prefect_port, "/api/health"), proc, 180)


def start_worker(stack: Stack) -> None:
    """The work pool (process type) and one worker polling it, with the stack's tracking URI."""
    if running_pid(stack, "worker"):
        return
    team = stack.cfg.team
    env = {**os.environ, "MLFLOW_TRACKING_URI": stack.local_url(team.mlflow_port, ""),
           "PREFECT_API_URL": stack.local_url(team.prefect_port, "/api")}
    pool = team.work_pool
    exists = subprocess.run([_bin("prefect"), "work-pool", "inspect", pool], env=env, capture_output=True)
    if exists.returncode != 0:
        out = subprocess.run([_bin("prefect"), "work-pool", "create", pool, "--type", "process"],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise CxrError(f"cannot create work pool {pool}: {out.stdout[-500:]} {out.stderr[-500:]}")
    name = f"cxr-{os.uname().nodename}"
    started = datetime.now(timezone.utc)
    proc = _spawn(stack, "worker", [_bin("prefect"), "worker", "start", "--pool", pool, "--type", "process",
                                    "--name", name], env)
    _wait_worker(stack, proc, name, started)


def _wait_worker(stack: Stack, proc: subprocess.Popen, name: str, started: datetime, seconds: float = 120) -> None:
    """The worker is up once the server has a heartbeat from it newer than its start."""
    url = stack.local_url(stack.cfg.team.prefect_port, f"/api/work_pools/{stack.cfg.team.work_pool}/workers/filter")
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                if any(w["name"] == name and w.get("last_heartbeat_time")
                       and datetime.fromisoformat(w["last_heartbeat_time"]) >= started
                       for w in json.loads(resp.read())):
                    return
        except OSError:
            pass
        time.sleep(1)
    tail = (stack.state / "worker.log").read_text(errors="replace")[-2000:]
    raise CxrError(f"the Prefect worker did not register with {stack.prefect_api}:\n{tail}")


SERVICES = (("postgres", start_postgres), ("mlflow", start_mlflow), ("prefect", start_prefect),
            ("worker", start_worker))


def up(cfg: Config, only: list[str] | None = None) -> dict[str, float]:
    """Start what is not running yet; seconds each start took (0 when it was already up)."""
    stack = Stack(cfg)
    stack.state.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for name, start in SERVICES:
        if only and name not in only:
            continue
        began = time.perf_counter()
        log.info("stack: starting %s", name)
        start(stack)
        seconds[name] = round(time.perf_counter() - began, 1)
        log.info("stack: %s up in %.1f s", name, seconds[name])
    (stack.state / "startup.json").write_text(json.dumps(seconds, indent=2))
    return seconds


class Stopped(NamedTuple):
    seconds: float
    killed: bool  # did not stop within the grace time, so its shutdown did not finish


def down(cfg: Config) -> dict[str, Stopped]:
    """Stop the worker, the servers and PostgreSQL (in that order); data stays for the next up.
    Returns how each running service stopped."""
    stack = Stack(cfg)
    stopped: dict[str, Stopped] = {}
    for name in ("worker", "prefect", "mlflow"):
        pid = running_pid(stack, name)
        if pid:
            started = time.monotonic()
            graceful = stop_group(pid)
            stopped[name] = Stopped(time.monotonic() - started, not graceful)
        _pid_file(stack, name).unlink(missing_ok=True)
    if (stack.pg_dir / "data" / "PG_VERSION").is_file():
        started = time.monotonic()
        stop_postgres(stack)
        stopped["postgres"] = Stopped(time.monotonic() - started, False)
    return stopped


def status(cfg: Config) -> dict[str, str]:
    """Which services run, and the URLs clients use."""
    stack = Stack(cfg)
    state = {name: ("running" if running_pid(stack, name) else "stopped") for name in ("mlflow", "prefect", "worker")}
    pg = stack.pg_dir / "data" / "postmaster.pid"
    state["postgres"] = "running" if pg.is_file() and pid_alive(int(pg.read_text().split()[0])) else "stopped"
    return {**state, **stack.client_env()}
