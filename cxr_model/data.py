"""Ingest: discover the landing folder, describe every image, de-duplicate and split by patient."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from cxr_model.dicom import DICOM_SUFFIXES, is_dicom_file
from cxr_model.errors import DataError
from cxr_model.images import ImageFacts, inspect_file

log = logging.getLogger("cxr.data")

LABELS = ("NORMAL", "PNEUMONIA")
SOURCE_SPLITS = ("train", "val", "test")
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = [
    "path", "split", "label", "patient_id", "sha256", "width", "height", "mode", "bytes", "error",
]

FACT_FIELDS = [f.name for f in fields(ImageFacts)]

_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
_NORMAL = re.compile(r"^((?:NORMAL2-)?IM-\d+)-", re.IGNORECASE)
_TYPE = re.compile(r"^person\d+_(bacteria|virus)_", re.IGNORECASE)


def patient_id(filename: str) -> str:
    """Patient from the Kermany file names; an unknown pattern counts as its own patient."""
    name = Path(filename).name
    for pattern in (_PERSON, _NORMAL):
        match = pattern.match(name)
        if match:
            return match.group(1)
    return Path(name).stem


def pneumonia_type(filename: str) -> str:
    """"bacteria" or "virus" from the Kermany file names ("" when the name does not say): the
    viral films are the harder half, and a total sensitivity can hide it."""
    match = _TYPE.match(Path(filename).name)
    return match.group(1).lower() if match else ""


@dataclass(frozen=True)
class Found:
    path: str  # relative to the source, with forward slashes
    source_split: str
    label: str


def discover(source: Path, extensions: tuple[str, ...]) -> list[Found]:
    """List images in the Kaggle layout, failing with one sentence when the layout is wrong."""
    if not source.exists():
        raise DataError(f"landing folder not found: {source} (set CXR_DATA or data.landing)")
    if not source.is_dir():
        raise DataError(f"landing folder is not a directory: {source}")
    present = [s for s in SOURCE_SPLITS if (source / s).is_dir()]
    for needed in ("train", "test"):
        if needed not in present:
            raise DataError(
                f"{source} has no '{needed}/' folder: expected the Kaggle layout "
                "train|val|test/NORMAL|PNEUMONIA"
            )
    wanted = {e.lower() for e in extensions}
    any_dicom = bool(wanted & set(DICOM_SUFFIXES))  # then DICOM under any name too
    found: list[Found] = []
    passed_over: list[str] = []
    for split in present:
        split_dir = source / split
        folders = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        unexpected = [f for f in folders if f not in LABELS]
        if unexpected:
            raise DataError(
                f"unexpected class folder '{unexpected[0]}' in {split_dir}: "
                f"class folders must be exactly {' and '.join(LABELS)}"
            )
        for label in LABELS:
            label_dir = split_dir / label
            if not label_dir.is_dir():
                raise DataError(f"missing class folder {label_dir}")
            for root, dirs, files in os.walk(label_dir):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    rel = Path(root, name).relative_to(source).as_posix()
                    if Path(name).suffix.lower() in wanted or (any_dicom and is_dicom_file(Path(root, name))):
                        found.append(Found(rel, split, label))
                    else:
                        passed_over.append(rel)
    if not found:
        raise DataError(f"no images with extensions {', '.join(extensions)} found under {source}")
    if passed_over:
        log.warning("ingest: passed over %d file(s) that are not films of data.extensions (%s), e.g. %s",
                    len(passed_over), ", ".join(extensions), "; ".join(passed_over[:3]))
    return found


def inspect_all(
    source: Path, found: list[Found], max_pixels: int, index_path: Path | None = None
) -> list[ImageFacts]:
    """Hash and decode every file once, reusing facts of files unchanged since the last ingest."""
    previous: dict[tuple[str, int, int], ImageFacts] = {}
    index = pd.read_csv(index_path, keep_default_na=False, dtype=str) if index_path and index_path.is_file() else None
    # An index written before ingest read DICOM files lacks their patient column: read everything again.
    if index is not None and list(index.columns) == ["path", "size", "mtime_ns", *FACT_FIELDS]:
        for row in index.to_dict("records"):
            key = (row.pop("path"), int(row.pop("size")), int(row.pop("mtime_ns")))
            previous[key] = ImageFacts(**{**row, "bytes": int(row["bytes"]),
                                          "width": int(row["width"]), "height": int(row["height"])})

    stats = [os.stat(source / f.path) for f in found]
    keys = [(f.path, st.st_size, st.st_mtime_ns) for f, st in zip(found, stats)]
    todo = [i for i, k in enumerate(keys) if k not in previous]
    facts: dict[int, ImageFacts] = {i: previous[k] for i, k in enumerate(keys) if k in previous}
    log.info("ingest: %d images found, %d reused from the last ingest, %d to read",
             len(found), len(facts), len(todo))

    step = max(1, len(todo) // 10)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = pool.map(lambda i: inspect_file(source / found[i].path, max_pixels), todo)
        for n, (i, result) in enumerate(zip(todo, results), start=1):
            facts[i] = result
            if n % step == 0 or n == len(todo):
                log.info("ingest: read %d/%d images", n, len(todo))

    ordered = [facts[i] for i in range(len(found))]
    if index_path is not None:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"path": k[0], "size": k[1], "mtime_ns": k[2], **asdict(f)} for k, f in zip(keys, ordered)]
        tmp = index_path.with_suffix(".tmp")
        pd.DataFrame(rows).to_csv(tmp, index=False)
        tmp.replace(index_path)
    return ordered


def drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one file per hash within a source split, and drop train copies of test images."""
    decodable = frame[frame["error"] == ""]
    dropped = []
    for _, group in decodable.groupby(["source_split", "sha256"], sort=True):
        if len(group) > 1:
            keep = group.sort_values("path").iloc[0]
            for _, row in group.sort_values("path").iloc[1:].iterrows():
                dropped.append({"sha256": row.sha256, "dropped_path": row.path,
                                "kept_path": keep.path, "reason": f"duplicate within {row.source_split}"})
    dropped_paths = {d["dropped_path"] for d in dropped}
    remaining = decodable[~decodable["path"].isin(dropped_paths)]
    held_out = remaining[remaining["source_split"] == "test"].set_index("sha256")["path"].to_dict()
    for _, row in remaining[remaining["source_split"] != "test"].iterrows():
        if row.sha256 in held_out:
            dropped.append({"sha256": row.sha256, "dropped_path": row.path,
                            "kept_path": held_out[row.sha256], "reason": "same file in test"})
    report = pd.DataFrame(dropped, columns=["sha256", "dropped_path", "kept_path", "reason"])
    kept = frame[~frame["path"].isin(set(report["dropped_path"]))]
    return kept.reset_index(drop=True), report


def _rank(seed: int, patient: str) -> str:
    return hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()


def assign_validation(frame: pd.DataFrame, fraction: float, seed: int) -> pd.Series:
    """Split the training pool by patient, stratified by label: a patient never straddles splits.

    Within each label, patients are ordered by a seeded hash of their id and taken into validation
    until the label's image share reaches `fraction`; hashing keeps a patient's assignment stable
    when new patients arrive in later data versions.
    """
    split = pd.Series("test", index=frame.index, dtype=object)
    pool = frame[frame["source_split"] != "test"]
    split[pool.index] = "train"
    if pool.empty:
        return split
    # A patient with images under both labels is placed by its majority label.
    majority = pool.groupby("patient_id")["label"].agg(lambda s: s.value_counts().idxmax())
    sizes = pool.groupby("patient_id").size()
    for label in LABELS:
        patients = sorted(majority[majority == label].index, key=lambda p: _rank(seed, p))
        target = fraction * sizes[patients].sum() if patients else 0
        taken, chosen = 0, []
        for patient in patients:
            if taken >= target:
                break
            chosen.append(patient)
            taken += sizes[patient]
        split[pool.index[pool["patient_id"].isin(chosen)]] = "val"
    return split


def build_manifest(
    source: Path,
    extensions: tuple[str, ...],
    val_fraction: float,
    seed: int,
    max_pixels: int,
    index_path: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per kept image (with any decode error recorded), plus the duplicate report."""
    found = discover(source, extensions)
    facts = inspect_all(source, found, max_pixels, index_path)
    frame = pd.DataFrame(
        [{**asdict(f), **asdict(x), "patient_id": x.patient or patient_id(f.path)} for f, x in zip(found, facts)]
    )
    unnamed = sum(x.mode == "DICOM" and not x.patient for x in facts)
    if unnamed:
        log.warning("ingest: %d DICOM film(s) carry no PatientID: each counts as its own patient (or the "
                    "Kermany file-name rule), so one patient's films may land in both train and val", unnamed)
    if (frame["source_split"] == "val").any():
        log.info("ingest: the source has its own val/ folder (%d images); folded into train "
                 "before the patient-grouped split", int((frame["source_split"] == "val").sum()))
    kept, duplicates = drop_duplicates(frame)
    if len(duplicates):
        log.info("ingest: dropped %d duplicate files (%d within a split, %d train copies of test images)",
                 len(duplicates), int(duplicates["reason"].str.startswith("duplicate").sum()),
                 int((duplicates["reason"] == "same file in test").sum()))
    kept["split"] = assign_validation(kept, val_fraction, seed)
    manifest = kept[MANIFEST_COLUMNS].sort_values(["split", "label", "path"]).reset_index(drop=True)
    return manifest, duplicates


def manifest_fingerprint(manifest: pd.DataFrame) -> str:
    """Content hash of what training sees (paths, splits, labels, bytes), independent of location."""
    digest = hashlib.sha256()
    for row in manifest[["path", "split", "label", "sha256"]].itertuples(index=False):
        digest.update("\t".join(row).encode() + b"\n")
    return digest.hexdigest()


def read_manifest(path: Path) -> pd.DataFrame:
    """Load a manifest written by ingest, with types restored."""
    if not path.is_file():
        raise DataError(f"manifest not found: {path} (run the ingest step first)")
    return pd.read_csv(path, keep_default_na=False, dtype={"patient_id": str, "sha256": str, "mode": str})


def summarize(manifest: pd.DataFrame) -> dict:
    """Counts per split and label, and patients per split, for logs and MLflow."""
    counts = manifest.groupby(["split", "label"]).size()
    return {
        "images": int(len(manifest)),
        "counts": {s: {lab: int(counts.get((s, lab), 0)) for lab in LABELS} for s in SPLITS},
        "patients": {s: int(manifest.loc[manifest["split"] == s, "patient_id"].nunique()) for s in SPLITS},
        "unreadable": int((manifest["error"] != "").sum()),
        "fingerprint": manifest_fingerprint(manifest),
    }
