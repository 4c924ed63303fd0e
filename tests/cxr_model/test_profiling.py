import pandas as pd

from cxr_model import data, preprocess, profiling

PNG = b"\x89PNG\r\n\x1a\n"


def test_counts_table(dataset):
    manifest = data.build_manifest(dataset, (".jpeg",), 0.25, 1, 10_000_000)[0]
    table = profiling.counts_table(manifest)
    assert table.loc["test", "NORMAL"] == 10 and table.loc["test", "PNEUMONIA"] == 10
    assert table["total"].sum() == len(manifest)
    assert table.loc["test", "pneumonia_share"] == 0.5
    assert table.loc["train", "patients"] == manifest[manifest["split"] == "train"]["patient_id"].nunique()
    pneumonia = manifest[manifest["label"] == "PNEUMONIA"]
    for split in ("train", "val", "test"):
        names = pneumonia.loc[pneumonia["split"] == split, "path"]
        assert table.loc[split, "pneumonia_virus"] == names.str.contains("_virus_").sum()
        assert table.loc[split, "pneumonia_virus"] + table.loc[split, "pneumonia_bacteria"] == len(names)
    assert table["pneumonia_virus"].sum() > 0 and table["pneumonia_bacteria"].sum() > 0


def test_duplicate_groups_collect_every_dropped_copy():
    dropped = pd.DataFrame({
        "sha256": ["a", "a", "b"], "dropped_path": ["x2", "x3", "y2"], "kept_path": ["x1", "x1", "y1"],
        "reason": ["duplicate within train", "duplicate within train", "same file in test"],
    })
    groups = profiling.duplicate_groups(dropped)
    assert groups["files"].tolist() == [3, 2]
    assert groups.iloc[0]["dropped_paths"] == "x2; x3"
    assert profiling.duplicate_groups(dropped.iloc[:0]).empty


def test_profile_writes_tables_and_charts(dataset, tmp_path):
    manifest, duplicates = data.build_manifest(dataset, (".jpeg",), 0.25, 1, 10_000_000)
    pixels = preprocess.decoded_pixels(manifest, dataset, 32, 10_000_000, tmp_path / "cache")
    files = profiling.write_profile(manifest, duplicates, pixels, tmp_path / "profile")
    for key in ("chart", "sizes", "film_stats", "samples"):
        assert files[key].read_bytes()[:8] == PNG, key
    assert "| test" in files["counts_md"].read_text()
    stats = pd.read_csv(files["film_stats_csv"])
    assert len(stats) == len(manifest) and stats["brightness"].between(0, 255).all()
    assert stats["path"].tolist() == manifest["path"].tolist() and stats["detail"].between(0, 1).all()


def test_the_test_splits_smoother_normal_films_are_set_apart_from_the_training_films(tmp_path, caplog):
    from PIL import Image, ImageFilter

    from cxr_model import steps
    from cxr_model.config import load_config
    from tests.conftest import make_dataset, write_params

    landing = make_dataset(tmp_path / "landing", normal_patients=30, pneumonia_patients=30, test_patients=15)
    for film in (landing / "test" / "NORMAL").iterdir():  # another scanner's softer NORMAL films
        Image.open(film).filter(ImageFilter.GaussianBlur(2)).save(film, quality=95)
    cfg = load_config(write_params(tmp_path / "project", landing, preprocess={"image_size": 48}))
    for name in ("ingest", "validate"):
        steps.STEPS[name](cfg)
    with caplog.at_level("WARNING", logger="cxr"):
        steps.STEPS["profile"](cfg)
    shift = pd.read_csv(cfg.layout.profile_dir / "split_shift.csv").set_index(["split", "group", "statistic"])
    blurred = shift.loc[("test", "NORMAL", "detail")]
    assert blurred["shifted"] and blurred["ks"] > 0.8 and blurred["cohort_median"] < blurred["training_q1"]
    # The films left alone sit far closer to their training films (small synthetic samples: not zero).
    assert shift.loc[("test", "PNEUMONIA", "detail"), "ks"] < 0.5 and shift.loc[("val", "NORMAL", "detail"), "ks"] < 0.5
    assert (f"the test split's NORMAL films differ from the training films in detail (Kolmogorov-Smirnov "
            f"distance {blurred['ks']:.2f}; split_shift.csv)") in caplog.text
    assert set(shift.index.get_level_values("split")) == {"val", "test"}
