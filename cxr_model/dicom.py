"""DICOM chest films to the same 8-bit grayscale the model was trained on."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np


def is_dicom(data: bytes) -> bool:
    """Part-10 files carry 'DICM' after a 128-byte preamble."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def is_dicom_file(path: Path) -> bool:
    """DICOM content under any name: PACS exports often name files by UID (dots and digits) or
    give them no suffix at all."""
    try:
        with open(path, "rb") as f:
            return is_dicom(f.read(132))
    except OSError:
        return False


DICOM_SUFFIXES = (".dcm", ".dicom")

# Header fields that say what a film shows (the plausibility checks read them; JPEG and PNG
# carry none of this).
HEADER_FIELDS = ("Modality", "BodyPartExamined", "ViewPosition", "PatientAge")


def read_dicom(data: bytes, max_pixels: int) -> tuple[np.ndarray, dict[str, str]]:
    """Pixels after the modality LUT (rescale slope/intercept) and VOI LUT (window), with
    MONOCHROME1 inverted so bone is bright as in the training JPEGs, as uint8 (h, w); and the
    header fields of HEADER_FIELDS that are filled in, upper-cased, with the PatientID as written
    (which films are one patient's, for `cxr assess`'s intervals; never written to any output)
    and the scanner (manufacturer and model: `cxr assess`'s figures per scanner)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from cxr_model.images import ImageError, stretch_to_uint8

    try:
        ds = dcmread(io.BytesIO(data), force=False)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise ImageError(f"cannot read DICOM: {exc}") from None
    if "PixelData" not in ds:
        raise ImageError("DICOM file holds no image (no PixelData element)")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > max_pixels:
        raise ImageError(f"decompression-bomb guard: {cols}x{rows} pixels exceeds the "
                         f"{max_pixels:,}-pixel limit; not decoded")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # missing codec, truncated data, ...
        raise ImageError(f"cannot decode DICOM pixels: {exc}") from None
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(f"DICOM photometric interpretation {photometric} is not a grayscale radiograph")
    values = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float32)
    if int(ds.get("BitsStored", 16)) <= 8 and values.min() >= 0 and values.max() <= 255:
        gray = np.round(values).astype(np.uint8)  # already 8-bit display values: keep them
    else:
        gray = stretch_to_uint8(values)  # 12/16-bit or rescaled values: window result to 0-255
    return 255 - gray if photometric == "MONOCHROME1" else gray, _header(ds)


def read_header(path: Path) -> dict[str, str]:
    """The header fields `read_dicom` gives, without reading the pixels: the validation suite
    checks every training film's header the way `cxr predict` checks a film it is given."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from cxr_model.images import ImageError

    try:
        return _header(dcmread(path, stop_before_pixels=True))
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise ImageError(f"cannot read DICOM: {exc}") from None


def _header(ds) -> dict[str, str]:
    header = {name: str(ds.get(name, "") or "").strip().upper() for name in HEADER_FIELDS}
    header["PatientID"] = str(ds.get("PatientID", "") or "").strip()
    header["scanner"] = " ".join(filter(None, (str(ds.get(name, "") or "").strip()
                                               for name in ("Manufacturer", "ManufacturerModelName"))))
    return {k: v for k, v in header.items() if v}


def pseudonym(patient_id: str) -> str:
    """A stable stand-in for a DICOM PatientID, so a manifest logged to MLflow groups a patient's
    films without carrying the hospital's identifier. A pseudonym, not anonymisation: an ID of a
    known format can be recovered by hashing every candidate."""
    return "dcm-" + hashlib.sha256(f"cxr-patient:{patient_id}".encode()).hexdigest()[:16]
