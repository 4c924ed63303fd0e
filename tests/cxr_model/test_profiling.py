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
