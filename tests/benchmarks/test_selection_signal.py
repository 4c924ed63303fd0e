import json

import numpy as np
import pytest

from benchmarks.selection_signal import configuration, main, rank_agreement, seed_share


def _row(name, val, test, seed=None, virus=None, probes=None):
    return {"name": name, "overrides": [f"train.seed={seed}"] if seed else [], "val_auc": val,
            "test": {"auc": test, "accuracy": test - 0.1, "specificity": test - 0.2},
            "val_auc_by_type": {} if virus is None else {"virus": virus},
            "val_probe_ratios": probes or {}}


def test_a_signal_that_orders_the_outcome_agrees_fully_and_a_reversed_one_disagrees():
    x = np.arange(12, dtype=float)
    groups = [f"c{i // 2}" for i in range(12)]
    same = rank_agreement(x, x ** 2, groups, resamples=200)
    assert same["rho"] == pytest.approx(1.0) and same["low"] == pytest.approx(1.0)
    assert (same["runs"], same["configurations"]) == (12, 6)
    reversed_ = rank_agreement(x, -x, groups, resamples=200)
    assert reversed_["rho"] == pytest.approx(-1.0) and reversed_["high"] == pytest.approx(-1.0)
    noise = rank_agreement(x, np.random.default_rng(3).permutation(x), groups, resamples=200)
    assert noise["low"] < noise["rho"] < noise["high"] and noise["low"] < 0 < noise["high"]


def test_runs_without_a_signal_are_left_out():
    x = np.array([1, 2, np.nan, 4, 5], dtype=float)
    out = rank_agreement(x, np.array([1, 2, 3, 4, 5.0]), list("abcde"), resamples=50)
    assert out["runs"] == 4 and out["rho"] == pytest.approx(1.0)


def test_seeds_of_one_configuration_are_grouped_and_their_spread_measured():
    assert configuration({"name": "LRU2-S43"}) == configuration({"name": "LRU2"}) == "LRU2"
    assert configuration({"name": "S43-LR"}) == "S43-LR"
    # Configurations far apart, seeds close together: the seed explains little of the spread.
    rows = [_row(f"C{c}" + (f"-S{s}" if s else ""), 0.99, 0.90 + 0.02 * c + 0.001 * k, seed=s)
            for c in range(4) for k, s in enumerate([None, 43, 44])]
    out = seed_share(rows, lambda r: r["test"]["auc"])
    assert (out["configurations"], out["runs"]) == (4, 12)
    assert out["seed_sd"] == pytest.approx(0.001)
    assert out["share"] < 0.01
    # Identical configurations: all of the spread is the seed's.
    same = [_row("C" + (f"-S{s}" if s else ""), 0.99, 0.90 + 0.01 * k, seed=s) for k, s in enumerate([None, 43, 44])]
    assert seed_share(same, lambda r: r["test"]["auc"])["share"] == pytest.approx(1.0)


def test_the_report_reads_a_results_file_and_refuses_too_few_runs(tmp_path, capsys):
    rows = [_row(f"C{c}" + (f"-S{s}" if s else ""), 0.99 + 0.001 * c, 0.95 + 0.005 * c + 0.001 * k, seed=s,
                 virus=0.98 + 0.001 * c, probes={"as_is": 1.0, "crop_80": 1.5 - 0.1 * c})
            for c in range(4) for k, s in enumerate([None, 43])]
    path = tmp_path / "experiments.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["--results", str(path), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "| val AUC | test AUC | 8 (4) | +0.9" in out
    assert "| minus largest probe | test spec | 8 (4) | +0.9" in out
    assert "aspect-jittered" not in out  # no run recorded it
    for i, r in enumerate(rows):
        r["val_aspect_jitter_auc"] = 0.99 - 0.001 * i if i < 5 else None
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["--results", str(path), "--resamples", "200"]) == 0
    assert "| val AUC aspect-jittered | test AUC | 5 (3) | -1.00" in capsys.readouterr().out
    path.write_text("\n".join(json.dumps(r) for r in rows[:3]) + "\n")
    with pytest.raises(SystemExit, match="3 runs recorded"):
        main(["--results", str(path), "--resamples", "200"])
