"""The model-scoring benchmarks on a small trained project: each reads the pipeline's split
arrays and a saved model through benchmarks.saved_model, and prints its table."""

import importlib

import pytest

from benchmarks import saved_model
from cxr_model import data, steps
from cxr_model.config import load_config
from tests.conftest import make_dataset, write_params


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved-model")
    params = write_params(tmp / "project", make_dataset(tmp / "landing", size=64), preprocess={"image_size": 48})
    cfg = load_config(params)
    for name in ("ingest", "train"):
        steps.STEPS[name](cfg)
    return cfg, ["--params", str(params), "--model", str(cfg.layout.model)]


def test_load_gives_the_saved_model_and_the_pipelines_split_arrays(trained, capsys):
    cfg, argv = trained
    _, model, arrays, _ = saved_model.load("", argv)
    manifest = data.read_manifest(cfg.layout.manifest)
    for split in ("val", "test"):
        assert len(arrays[split]) == int((manifest["split"] == split).sum())
        assert arrays[split].x.shape[1:] == (48, 48, 1)
    assert model.input_shape[1:] == (48, 48, 1)
    assert "validation" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        saved_model.load("", argv + [str(cfg.layout.model)])  # one model only, unless `several`


@pytest.mark.parametrize("name, extra, header", [
    ("aspect_jitter", [], "| model | val AUC | aspect-jittered val AUC |"),
    ("probes", [], "| probe |"),
    ("tta", ["--blind", "--variant", "aspect"], "| model | variant | views | val AUC |"),
    ("seed_ensemble", ["--model", "MODEL", "MODEL"], "| members |"),  # the average of two
    ("threshold_rules", [], "| model |"),
    ("adapt_bn", [], "adapted: AUC"),
    ("normal_series", [], "| 1 | test |"),
])
def test_each_model_scoring_benchmark_runs_on_a_saved_model(trained, capsys, name, extra, header):
    _, argv = trained
    extra = [argv[-1] if arg == "MODEL" else arg for arg in extra]
    assert importlib.import_module(f"benchmarks.{name}").main(argv + extra) == 0
    assert header in capsys.readouterr().out


def test_the_spectrum_table_reads_the_source_films_without_a_model(trained, capsys):
    from benchmarks import normal_series

    _, argv = trained
    assert normal_series.main(["--spectrum", "--films", "5", *argv[:2]]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| t")]
    assert [row.split(" | ")[:3] for row in rows] == [["| test", "IM", "5"], ["| test", "PNEUMONIA", "5"],
                                                      ["| train+val", "IM", "5"], ["| train+val", "PNEUMONIA", "5"]]
