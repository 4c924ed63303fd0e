"""Cheap checks that an input could be a frontal chest X-ray before the model scores it.

The CNN outputs a confident probability for anything it is given, a holiday photo included, so
inputs that are clearly not radiographs are refused with a reason instead. These are
heuristics (size, shape, colour, intensity spread), not an out-of-distribution detector: a
lateral or adult film passes them, and the model card says so. A DICOM file says more of
itself: its header's modality, body part, view position and patient age are checked too.
"""

from __future__ import annotations

import re

import numpy as np

from cxr_model.config import PredictConfig
from cxr_model.images import Decoded


def implausibility(decoded: Decoded, cfg: PredictConfig) -> str | None:
    """The reason this image is not a plausible frontal chest X-ray, or None if it may be one."""
    header_problem = header_reason(decoded.header, cfg)
    if header_problem:
        return header_problem
    gray = decoded.gray
    h, w = gray.shape
    if min(h, w) < cfg.min_side:
        return f"image too small ({w}x{h} px; at least {cfg.min_side} px per side expected)"
    aspect = max(h, w) / min(h, w)
    if aspect > cfg.max_aspect_ratio:
        return f"aspect ratio {aspect:.2f} is not that of a chest film (at most {cfg.max_aspect_ratio})"
    if decoded.colourfulness > cfg.max_colourfulness:
        return (f"colour image (colourfulness {decoded.colourfulness:.0f} > {cfg.max_colourfulness:.0f}); "
                "radiographs are grayscale")
    sample = gray[:: max(1, h // 256), :: max(1, w // 256)]
    lo, hi = np.percentile(sample, [1, 99])
    if hi - lo < cfg.min_contrast:
        return f"blank or nearly uniform image (1-99 % intensity spread {hi - lo:.0f} < {cfg.min_contrast:.0f})"
    mean = float(sample.mean())
    if not cfg.mean_intensity[0] <= mean <= cfg.mean_intensity[1]:
        return (f"mean intensity {mean:.0f} outside {cfg.mean_intensity[0]:.0f}-{cfg.mean_intensity[1]:.0f} "
                "seen on chest X-rays (mostly black or mostly white image)")
    return None


def header_reason(header: dict[str, str], cfg: PredictConfig) -> str | None:
    """What a DICOM header says against scoring the film (fields left empty are not held against
    it): not a projection radiograph, not the chest, not a frontal view, or an adult."""
    modality, part, view = (header.get(k, "") for k in ("Modality", "BodyPartExamined", "ViewPosition"))
    modalities, parts, views = cfg.dicom_modalities, cfg.dicom_body_parts, cfg.dicom_views
    if modality and modalities and modality not in modalities:
        return f"DICOM modality {modality} is not a radiograph (one of {', '.join(modalities)} expected)"
    if part and parts and not any(p in part for p in parts):
        return f"DICOM body part {part}: the model reads chest films only"
    if view and views and view not in views:
        return f"DICOM view position {view}: the model reads frontal ({' or '.join(views)}) films only"
    age = age_in_years(header.get("PatientAge", ""))
    if age is not None and cfg.max_patient_age_years > 0 and age > cfg.max_patient_age_years:
        return (f"patient age {header['PatientAge']} in the DICOM header: the model was trained on children's "
                f"films (ages 1-5; refused above {cfg.max_patient_age_years:g} years)")
    return None


def age_in_years(value: str) -> float | None:
    """A DICOM age string (nnnD, nnnW, nnnM or nnnY) in years, or None if absent or malformed."""
    match = re.fullmatch(r"(\d{1,3})([DWMY])", value.strip().upper())
    if not match:
        return None
    per_year = {"D": 365.25, "W": 365.25 / 7, "M": 12.0, "Y": 1.0}[match.group(2)]
    return int(match.group(1)) / per_year
