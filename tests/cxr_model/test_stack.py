"""Team stack settings: client URLs, the password never on a command line, a clear error when
PostgreSQL is missing. (The real servers are exercised in tests/e2e/test_team_stack.py.)"""

import stat

import pytest

from cxr_model import stack
from cxr_model.config import build_config, load_config
from cxr_model.errors import CxrError
from tests.conftest import ROOT


def _cfg(tmp_path, **team):
    raw = load_config(ROOT / "params.yaml").raw
    raw = {**raw, "team": {**raw["team"], "state_dir": str(tmp_path / "state"), **team}}
    return build_config(raw, ROOT)


def test_clients_reach_a_wildcard_bound_server_on_loopback(tmp_path):
    s = stack.Stack(_cfg(tmp_path, host="0.0.0.0", mlflow_port=5123, prefect_port=4321))
    assert s.client_env() == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5123",
                              "PREFECT_API_URL": "http://127.0.0.1:4321/api"}
    assert stack.Stack(_cfg(tmp_path, host="10.0.0.7")).tracking_uri.startswith("http://10.0.0.7:")
    public = stack.Stack(_cfg(tmp_path, host="0.0.0.0", public_host="cxr-team.lan", prefect_port=4321))
    assert public.prefect_api == "http://cxr-team.lan:4321/api"  # what other machines are told
    assert public.local_url(4321, "/api/health") == "http://127.0.0.1:4321/api/health"  # what this host checks


def test_the_database_password_lives_in_a_private_passfile_not_in_urls(tmp_path, monkeypatch):
    monkeypatch.delenv("CXR_PG_PASSWORD", raising=False)
    s = stack.Stack(_cfg(tmp_path, postgres_port=6543))
    s.state.mkdir(parents=True)
    path = stack.passfile(s)
    host, port, db, user, password = path.read_text().strip().split(":")
    assert (host, port, db, user) == ("127.0.0.1", "6543", "*", "cxr") and len(password) >= 20
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert password not in s.db_url("mlflow")
    assert stack.passfile(s).read_text() == path.read_text()  # generated once, then kept
    monkeypatch.setenv("CXR_PG_PASSWORD", "chosen-by-admin")
    assert stack.passfile(s).read_text().strip().endswith(":chosen-by-admin")


def test_missing_postgresql_is_one_clear_sentence(monkeypatch):
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    monkeypatch.setattr(stack.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(stack.os, "geteuid", lambda: 1000)  # not root: never apt-get here
    with pytest.raises(CxrError, match=r"PostgreSQL server programs \(initdb, pg_ctl\) not found"):
        stack.postgres_bin()


def test_status_of_a_stack_that_never_started(tmp_path):
    state = stack.status(_cfg(tmp_path))
    assert {state[k] for k in ("postgres", "mlflow", "prefect", "worker")} == {"stopped"}
