"""Decode any supported image to the one grayscale array both training and prediction use."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_model.dicom import DICOM_SUFFIXES

# The suffixes of the films both ingest and `cxr predict` look at by default (DICOM content is
# also found under any name).
FILM_SUFFIXES = (".jpeg", ".jpg", ".png", *DICOM_SUFFIXES)

# Pillow's own bomb guard stays on as a second line behind max_pixels.
Image.MAX_IMAGE_PIXELS = 200_000_000


class ImageError(ValueError):
    """The bytes are not an image we can safely use; the message says why."""


@dataclass(frozen=True)
class ImageFacts:
    """What ingest records about one file, read in a single decode."""

    sha256: str
    bytes: int
    width: int
    height: int
    mode: str  # Pillow's mode, or "DICOM"
    error: str
    patient: str = ""  # DICOM only: dicom.pseudonym of the header's PatientID, when it has one


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open and fully decode, refusing oversized images before their pixels are read."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    f"decompression-bomb guard: {width}x{height} pixels exceeds the "
                    f"{max_pixels:,}-pixel limit; not decoded"
                )
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("cannot decode: not an image file (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression-bomb guard: not decoded ({exc})") from None
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageError(f"cannot decode: {exc}") from None
    return img


def stretch_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Min-max stretch of 16-bit, float or DICOM values to 0-255."""
    arr = np.asarray(arr, dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return np.round(scaled).astype(np.uint8)


def to_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow mode to 8-bit grayscale; 16-bit and float images are stretched to 0-255."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return stretch_to_uint8(np.asarray(img, dtype=np.float32))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    if img.mode == "CMYK":
        img = img.convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.uint8)


def colourfulness(img: Image.Image) -> float:
    """Mean spread between colour channels (0 for grayscale): X-rays carry no colour."""
    if img.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
        return 0.0
    small = img.convert("RGB").reduce(max(1, min(img.size) // 64))  # a 64-px view is plenty
    rgb = np.asarray(small, dtype=np.int16)
    return float(np.mean(np.ptp(rgb, axis=2)))


@dataclass(frozen=True)
class Decoded:
    """One decoded file: the grayscale pixels plus what plausibility checks need."""

    gray: np.ndarray
    colourfulness: float
    format: str
    header: dict[str, str] = field(default_factory=dict)  # DICOM only: dicom.HEADER_FIELDS and PatientID filled in


def decode(data: bytes, max_pixels: int) -> Decoded:
    """Bytes of a JPEG, PNG (8/16-bit) or DICOM file to 8-bit grayscale at native size."""
    from cxr_model import dicom

    if dicom.is_dicom(data):
        gray, header = dicom.read_dicom(data, max_pixels)
        return Decoded(gray, 0.0, "DICOM", header)
    img = open_image(data, max_pixels)
    return Decoded(to_gray(img), colourfulness(img), img.format or "unknown")


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Squash to size x size (the dataset itself was resized without keeping aspect)."""
    if gray.shape == (size, size):
        return gray
    img = Image.fromarray(gray, mode="L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def preprocess(gray: np.ndarray, size: int) -> np.ndarray:
    """Native grayscale -> the model input (size, size) uint8: the one preprocessing path."""
    return resize_square(gray, size)


def load_for_model(path: str | Path, size: int, max_pixels: int) -> np.ndarray:
    """File -> model input, as used for the training cache and for prediction alike."""
    return preprocess(decode(Path(path).read_bytes(), max_pixels).gray, size)


def inspect_file(path: str | Path, max_pixels: int) -> ImageFacts:
    """Hash and decode one file, recording a readable reason instead of raising."""
    from cxr_model import dicom

    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        if dicom.is_dicom(data):
            gray, header = dicom.read_dicom(data, max_pixels)
            patient = dicom.pseudonym(header["PatientID"]) if "PatientID" in header else ""
            return ImageFacts(digest, len(data), gray.shape[1], gray.shape[0], "DICOM", "", patient)
        img = open_image(data, max_pixels)
    except ImageError as exc:
        return ImageFacts(digest, len(data), 0, 0, "", str(exc))
    return ImageFacts(digest, len(data), img.width, img.height, img.mode, "")
