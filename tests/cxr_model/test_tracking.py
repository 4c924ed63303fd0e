"""Tracking: a tracking server that does not answer is said in one sentence, within seconds."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cxr_model import cli, tracking
from cxr_model.errors import CxrError
from cxr_model.processes import free_port
from tests.conftest import ROOT, synthetic_xray


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server hook's name)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_server_that_does_not_answer_is_named_and_one_that_answers_anything_passes():
    silent = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CxrError, match=f"tracking server at {silent} does not answer .*refused"):
        tracking.check_server(silent)
    assert silent not in tracking._ANSWERED  # a later call looks again
    server = HTTPServer(("127.0.0.1", 0), _NotFound)  # an answer other than OK is still an answer
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_port}/prefix"
        tracking.check_server(uri)
        assert uri in tracking._ANSWERED
    finally:
        server.shutdown()
    tracking.check_server("sqlite:///nowhere/mlflow.db")  # a file store needs no server


def test_predict_against_a_silent_server_stops_in_one_sentence(tmp_path, monkeypatch, capsys):
    film = tmp_path / "film.jpeg"
    synthetic_xray(1, "NORMAL", 64).save(film)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    assert cli.main(["--params", str(ROOT / "params.yaml"), "predict", str(film), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cxr predict: the MLflow tracking server at http://127.0.0.1:")
    assert "make team-up" in err[-1]
