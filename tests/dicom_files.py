"""Write small DICOM files for tests (pydicom), the way scanners store chest films."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def dicom_bytes(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    **header: str,
) -> bytes:
    """A Part-10 DICOM (CR modality, chest, PA view) holding `pixels` (uint8 or uint16) with the
    given LUT tags; `header` sets or, with "", removes other fields (ViewPosition="LL", ...)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    for name, value in header.items():
        if value:
            setattr(ds, name, value)
        elif name in ds:
            delattr(ds, name)
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def as_dicom_dataset(source: Path, target: Path, **header: str) -> dict[str, str]:
    """Rewrite a Kaggle-layout folder of 8-bit films as DICOM files named by UID, the way a PACS
    export names them (nothing in the name says whose film it is): each file's PatientID is its
    Kermany patient with an "MRN-" prefix. `header` as in dicom_bytes. Returns new path -> MRN."""
    from cxr_model.data import patient_id

    mrns = {}
    for film in sorted(source.rglob("*.jpeg")):
        rel = film.relative_to(source)
        out = target / rel.parent / f"{generate_uid()}.dcm"
        out.parent.mkdir(parents=True, exist_ok=True)
        mrn = f"MRN-{patient_id(film.name)}"
        pixels = np.asarray(Image.open(film).convert("L"), dtype=np.uint8)
        out.write_bytes(dicom_bytes(pixels, **{"PatientID": mrn, **header}))
        mrns[out.relative_to(target).as_posix()] = mrn
    return mrns
