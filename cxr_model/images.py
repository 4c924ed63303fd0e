"""Decode any supported image to the one grayscale array both training and prediction use."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

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
    mode: str
    error: str


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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression-bomb guard: not decoded ({exc})") from None
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageError(f"cannot decode: {exc}") from None
    return img


def to_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow mode to 8-bit grayscale; 16-bit and float images are stretched to 0-255."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return np.round(scaled).astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    if img.mode == "CMYK":
        img = img.convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.uint8)


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Squash to size x size (the dataset itself was resized without keeping aspect)."""
    if gray.shape == (size, size):
        return gray
    img = Image.fromarray(gray, mode="L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def load_for_model(path: str | Path, size: int, max_pixels: int) -> np.ndarray:
    """The single preprocessing path: file -> uint8 array (size, size)."""
    data = Path(path).read_bytes()
    return resize_square(to_gray(open_image(data, max_pixels)), size)


def inspect_file(path: str | Path, max_pixels: int) -> ImageFacts:
    """Hash and decode one file, recording a readable reason instead of raising."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        img = open_image(data, max_pixels)
    except ImageError as exc:
        return ImageFacts(digest, len(data), 0, 0, "", str(exc))
    return ImageFacts(digest, len(data), img.width, img.height, img.mode, "")
