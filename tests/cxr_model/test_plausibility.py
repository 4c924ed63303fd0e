import numpy as np
import pytest

from cxr_model.config import PredictConfig
from cxr_model.images import Decoded
from cxr_model.plausibility import age_in_years, implausibility
from tests.conftest import synthetic_xray

CFG = PredictConfig(min_side=32)


def _gray(arr) -> Decoded:
    return Decoded(np.asarray(arr, dtype=np.uint8), 0.0, "PNG")


@pytest.mark.parametrize("label", ["NORMAL", "PNEUMONIA"])
def test_xray_like_images_pass(label):
    assert implausibility(_gray(synthetic_xray(3, label, 64)), CFG) is None


@pytest.mark.parametrize(
    "decoded, words",
    [
        (_gray(np.full((64, 64), 120)), "blank"),
        (_gray(np.random.default_rng(0).integers(0, 255, (20, 20))), "too small"),
        (_gray(np.random.default_rng(0).integers(0, 255, (40, 200))), "aspect ratio"),
        (Decoded(np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8), 60.0, "JPEG"), "colour"),
        (_gray(np.where(np.random.default_rng(0).random((64, 64)) < 0.97, 250, 10)), "mostly black or mostly white"),
    ],
)
def test_clearly_wrong_inputs_get_a_reason(decoded, words):
    reason = implausibility(decoded, CFG)
    assert reason is not None and words in reason


def _dicom(**header: str) -> Decoded:
    return Decoded(np.asarray(synthetic_xray(3, "NORMAL", 64), dtype=np.uint8), 0.0, "DICOM", header)


@pytest.mark.parametrize(
    "header, words",
    [
        ({"Modality": "CT"}, "modality CT is not a radiograph"),
        ({"Modality": "CR", "BodyPartExamined": "SKULL"}, "body part SKULL"),
        ({"ViewPosition": "LL"}, "view position LL"),
        ({"PatientAge": "045Y"}, "patient age 045Y"),
    ],
)
def test_a_dicom_header_that_says_otherwise_is_a_reason(header, words):
    reason = implausibility(_dicom(**header), CFG)
    assert reason is not None and words in reason


@pytest.mark.parametrize(
    "header",
    [
        {},  # nothing filled in: nothing held against the film
        {"Modality": "DX", "BodyPartExamined": "PEDIATRIC CHEST", "ViewPosition": "AP", "PatientAge": "018M"},
        {"Modality": "CR", "BodyPartExamined": "THORAX", "ViewPosition": "PA", "PatientAge": "005Y"},
        {"Modality": "SC", "BodyPartExamined": "LUNG"},  # a digitised film
        {"PatientAge": "about five"},  # malformed: not read
    ],
)
def test_a_frontal_pediatric_chest_header_passes(header):
    assert implausibility(_dicom(**header), CFG) is None


def test_the_lists_match_whatever_their_case():
    lower = PredictConfig(min_side=32, dicom_modalities=("cr",), dicom_body_parts=("chest",), dicom_views=("pa",))
    assert implausibility(_dicom(Modality="CR", BodyPartExamined="CHEST", ViewPosition="PA"), lower) is None
    assert "view position AP" in implausibility(_dicom(ViewPosition="AP"), lower)


def test_each_header_check_can_be_turned_off():
    off = PredictConfig(min_side=32, dicom_modalities=(), dicom_body_parts=(), dicom_views=(), max_patient_age_years=0)
    assert implausibility(_dicom(Modality="CT", BodyPartExamined="SKULL", ViewPosition="LL", PatientAge="070Y"), off) is None


@pytest.mark.parametrize("value, years", [("004Y", 4.0), ("018M", 1.5), ("026W", 26 * 7 / 365.25), ("365D", 365 / 365.25),
                                          ("", None), ("4Y5M", None), ("0004Y", None)])
def test_dicom_age_strings_in_years(value, years):
    assert age_in_years(value) == (None if years is None else pytest.approx(years))
