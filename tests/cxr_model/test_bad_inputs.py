"""A corpus of broken datasets: every case ends in a clear sentence naming the file and the rule;
critical cases stop before training and leave the registry untouched."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_model import steps
from cxr_model.stages.common import split_arrays
from cxr_model.config import load_config
from cxr_model.errors import DataError, ValidationFailed
from tests.conftest import mlflow_client, normal_name, pneumonia_name, synthetic_xray, write_params

NEW = "train/NORMAL/IM-0900-0001"


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decoder would allocate width*height bytes."""
    raw = zlib.compress(b"\x00" * 16)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def _write(dataset: Path, rel: str, payload: bytes) -> None:
    (dataset / rel).parent.mkdir(parents=True, exist_ok=True)
    (dataset / rel).write_bytes(payload)


def _png16(dataset: Path) -> None:
    arr = (np.asarray(synthetic_xray(901, "NORMAL")).astype(np.uint16) * 200)
    Image.fromarray(arr).save(dataset / f"{NEW}.png")


def _rgba(dataset: Path) -> None:
    synthetic_xray(902, "NORMAL").convert("RGBA").save(dataset / f"{NEW}.png")


def _reexport(dataset: Path) -> None:
    """A test film exported again into train: other gamma, other JPEG quality, so another sha256."""
    film = Image.open(dataset / "test" / "NORMAL" / normal_name(1, 1)).point(lambda v: 255 * (v / 255) ** 0.9)
    buf = io.BytesIO()
    film.save(buf, format="JPEG", quality=85)  # lower qualities blur the synthetic films' pixel noise away
    _write(dataset, f"{NEW}.jpeg", buf.getvalue())


CRITICAL = {
    "corrupt jpeg": (lambda d: _write(d, f"{NEW}.jpeg", _jpeg(synthetic_xray(1, "NORMAL"))[:300]),
                     "every file decodes as an image", f"{NEW}.jpeg (cannot decode"),
    "zero-byte file": (lambda d: _write(d, f"{NEW}.jpeg", b""),
                       "every file decodes as an image", f"{NEW}.jpeg (empty file (0 bytes))"),
    "text named .jpeg": (lambda d: _write(d, f"{NEW}.jpeg", b"patient notes, not an image\n"),
                         "every file decodes as an image", f"{NEW}.jpeg (cannot decode"),
    "decompression bomb": (lambda d: _write(d, f"{NEW}.png", _bomb_png(40_000, 40_000)),
                           "every file decodes as an image", f"{NEW}.png (decompression-bomb guard"),
    "test film re-exported into train": (_reexport, "is a near copy of a film in another split",
                                         f"{NEW}.jpeg (near copy of test/NORMAL/{normal_name(1, 1)})"),
    "empty class folder": (lambda d: [p.unlink() for p in (d / "test" / "NORMAL").iterdir()],
                           "every split holds at least 2 images per class", "test/NORMAL"),
}

CONVERTED = {
    "16-bit png": (_png16, f"{NEW}.png", "I;16"),
    "rgba png": (_rgba, f"{NEW}.png", "RGBA"),
    "cmyk jpeg": (lambda d: _write(d, f"{NEW}.jpeg", _jpeg(synthetic_xray(903, "NORMAL").convert("CMYK"))),
                  f"{NEW}.jpeg", "CMYK"),
}


@pytest.fixture
def cfg(dataset, tmp_path):
    return load_config(write_params(tmp_path / "project", dataset))


def _registry_is_empty(cfg) -> bool:
    mlflow.set_tracking_uri(cfg.tracking_uri)
    return mlflow_client(cfg.tracking_uri).search_registered_models() == []


@pytest.mark.parametrize("case", sorted(CRITICAL))
def test_critical_case_stops_before_training_naming_file_and_rule(case, cfg, dataset):
    breakage, rule, offender = CRITICAL[case]
    breakage(dataset)
    steps.ingest(cfg)
    with pytest.raises(ValidationFailed) as err:
        steps.validate(cfg)
    message = str(err.value)
    assert rule in message and offender in message, message
    assert not cfg.layout.model.exists()
    assert _registry_is_empty(cfg)


@pytest.mark.parametrize("case", sorted(CONVERTED))
def test_safe_formats_are_converted_and_reported(case, cfg, dataset, caplog):
    breakage, rel, mode = CONVERTED[case]
    breakage(dataset)
    steps.ingest(cfg)
    manifest = pd.read_csv(cfg.layout.manifest, keep_default_na=False).set_index("path")
    assert manifest.loc[rel, "mode"] == mode
    with caplog.at_level("WARNING", logger="cxr"):
        assert steps.validate(cfg)["warnings"] == 1
    assert "converted to 8-bit grayscale" in caplog.text and rel in caplog.text
    pixels = split_arrays(cfg)
    assert pixels["train"].x.dtype == np.uint8


def test_wrong_class_folder_name_is_refused_at_ingest(cfg, dataset):
    (dataset / "train" / "PNEUMONIA").rename(dataset / "train" / "Pneumonia")
    with pytest.raises(DataError, match=r"unexpected class folder 'Pneumonia' in .*train: class folders"):
        steps.ingest(cfg)
    assert _registry_is_empty(cfg)


def test_same_image_in_train_and_test_is_kept_in_test_only(cfg, dataset, caplog):
    test_file = dataset / "test" / "NORMAL" / normal_name(1, 1)
    shutil.copy(test_file, dataset / "train" / "NORMAL" / normal_name(60, 1))
    with caplog.at_level("INFO", logger="cxr"):
        steps.ingest(cfg)
    assert "1 train copies of test images" in caplog.text
    dup = pd.read_csv(cfg.layout.duplicates)
    assert dup.iloc[0]["dropped_path"] == f"train/NORMAL/{normal_name(60, 1)}"
    assert dup.iloc[0]["reason"] == "same file in test"
    assert steps.validate(cfg)["success"]


def test_one_patient_across_train_and_source_val_ends_on_one_side(cfg, dataset):
    (dataset / "val" / "PNEUMONIA").mkdir(parents=True)
    (dataset / "val" / "NORMAL").mkdir(parents=True)
    synthetic_xray(777, "PNEUMONIA").save(dataset / "val" / "PNEUMONIA" / pneumonia_name(3, 9))
    steps.ingest(cfg)
    manifest = pd.read_csv(cfg.layout.manifest, keep_default_na=False)
    pool = manifest[manifest["split"] != "test"]  # test patient numbers are another namespace
    assert len(pool[pool["patient_id"] == "person3"]) == 3
    assert pool.loc[pool["patient_id"] == "person3", "split"].nunique() == 1
    assert steps.validate(cfg)["success"]


def test_the_closest_pairs_across_splits_are_shown_with_the_copy_first(cfg, dataset):
    _reexport(dataset)
    steps.ingest(cfg)
    with pytest.raises(ValidationFailed):
        steps.validate(cfg)
    pairs = pd.read_csv(cfg.layout.closest_pairs)
    first = pairs.iloc[0]
    assert {first["path"], first["other_path"]} == {f"{NEW}.jpeg", f"test/NORMAL/{normal_name(1, 1)}"}
    assert first["correlation"] >= cfg.validate.near_copy_correlation > pairs["correlation"].iloc[1]
    assert first["other_split" if first["path"] == f"{NEW}.jpeg" else "split"] == "test"
    assert len(pairs) == len({frozenset(p) for p in zip(pairs["path"], pairs["other_path"])})  # each pair once
    assert (pairs["split"] != pairs["other_split"]).all()
    assert cfg.layout.closest_pairs_png.stat().st_size > 0
