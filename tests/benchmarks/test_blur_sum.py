from benchmarks.blur_sum import main, time_layers


def test_both_blurs_are_timed_as_training_runs_them(capsys):
    ms = time_layers(batch=2, size=16, batches=2)
    assert set(ms) == {"keras", "shifted_sum"} and all(v > 0 for v in ms.values())
    assert main(["--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "bit-identical to Keras's on this CPU: " in out and "ms per batch" in out
