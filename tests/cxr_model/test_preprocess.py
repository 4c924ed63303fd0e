import numpy as np
import pytest

from cxr_model import data, preprocess
from cxr_model.errors import DataError
from cxr_model.images import load_for_model


@pytest.fixture
def manifest(dataset):
    return data.build_manifest(dataset, (".jpeg",), 0.25, 1, 10_000_000)[0]


def test_arrays_match_the_shared_preprocessing_and_split_sizes(manifest, dataset, tmp_path):
    arrays = preprocess.load_arrays(manifest, dataset, 24, 10_000_000, tmp_path)
    for split in ("train", "val", "test"):
        rows = manifest[manifest["split"] == split]
        assert arrays[split].x.shape == (len(rows), 24, 24, 1)
        assert arrays[split].y.tolist() == (rows["label"] == "PNEUMONIA").astype(int).tolist()
    first = arrays["test"].paths[0]
    np.testing.assert_array_equal(arrays["test"].x[0, ..., 0], load_for_model(dataset / first, 24, 10_000_000))


def test_second_load_reads_the_cache_without_decoding(manifest, dataset, tmp_path, monkeypatch):
    first = preprocess.load_arrays(manifest, dataset, 24, 10_000_000, tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a cache")

    monkeypatch.setattr(preprocess, "decode_all", no_decoding)
    second = preprocess.load_arrays(manifest, dataset, 24, 10_000_000, tmp_path)
    np.testing.assert_array_equal(first["train"].x, second["train"].x)
    with pytest.raises(AssertionError, match="decoded again"):
        preprocess.load_arrays(manifest, dataset, 16, 10_000_000, tmp_path)  # other size, other key


def test_unreadable_rows_are_refused_with_the_path(manifest, dataset, tmp_path):
    broken = manifest.copy()
    broken.loc[0, "error"] = "cannot decode: truncated"
    with pytest.raises(DataError, match=f"unreadable image {dataset / broken.loc[0, 'path']}"):
        preprocess.load_arrays(broken, dataset, 24, 10_000_000, tmp_path)
