from cxr_model import data, profiling


def test_counts_table_and_chart(dataset, tmp_path):
    manifest = data.build_manifest(dataset, (".jpeg",), 0.25, 1, 10_000_000)[0]
    table = profiling.counts_table(manifest)
    assert table.loc["test", "NORMAL"] == 10 and table.loc["test", "PNEUMONIA"] == 10
    assert table["total"].sum() == len(manifest)
    assert table.loc["test", "pneumonia_share"] == 0.5
    assert table.loc["train", "patients"] == manifest[manifest["split"] == "train"]["patient_id"].nunique()
    files = profiling.write_profile(manifest, tmp_path)
    assert files["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| test" in files["counts_md"].read_text()
