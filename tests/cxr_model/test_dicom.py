import numpy as np
import pytest

from cxr_model.dicom import is_dicom, read_dicom
from cxr_model.images import ImageError, decode
from tests.dicom_files import dicom_bytes


def _gradient(dtype=np.uint8, top=255) -> np.ndarray:
    return np.tile(np.linspace(0, top, 80), (64, 1)).astype(dtype)


def test_eight_bit_monochrome2_keeps_its_values():
    pixels = _gradient()
    data = dicom_bytes(pixels)
    assert is_dicom(data)
    out = decode(data, 10_000_000)
    assert out.format == "DICOM" and out.gray.shape == (64, 80)
    np.testing.assert_array_equal(out.gray, pixels)


def test_monochrome1_is_inverted_so_bone_is_bright():
    pixels = _gradient()
    np.testing.assert_array_equal(read_dicom(dicom_bytes(pixels, "MONOCHROME1"), 10_000_000)[0], 255 - pixels)


def test_rescale_slope_and_intercept_are_applied_before_the_window():
    # stored 0..1000, slope 2 and intercept -1000 give -1000..1000; a window over 0..1000 puts
    # every stored value below 500 at black and stretches the rest.
    raw = np.tile(np.linspace(0, 1000, 101), (50, 1)).astype(np.uint16)
    gray = read_dicom(dicom_bytes(raw, slope=2.0, intercept=-1000.0, window=(500.0, 1000.0)), 10_000_000)[0]
    assert gray.dtype == np.uint8
    assert gray[0, :50].max() == 0            # rescaled value <= 0: below the window
    assert gray[0, -1] == 255                 # top of the window
    assert np.all(np.diff(gray[0, 50:].astype(int)) >= 0) and gray[0, 75] == pytest.approx(128, abs=3)


def test_twelve_bit_without_window_is_stretched_to_eight_bit():
    gray = read_dicom(dicom_bytes(_gradient(np.uint16, 4095)), 10_000_000)[0]
    assert gray.min() == 0 and gray.max() == 255


def test_broken_or_pixelless_dicom_gets_a_reason():
    data = dicom_bytes(_gradient())
    with pytest.raises(ImageError, match="DICOM"):
        decode(data[:400], 10_000_000)  # header without its pixels
    with pytest.raises(ImageError, match="decompression-bomb"):
        decode(data, 100)


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # the lower-case view is on purpose
def test_the_header_says_what_the_film_shows_and_empty_fields_are_left_out():
    _, header = read_dicom(dicom_bytes(_gradient(), PatientAge="004Y", ViewPosition="ap "), 10_000_000)
    assert header == {"Modality": "CR", "BodyPartExamined": "CHEST", "ViewPosition": "AP", "PatientAge": "004Y"}
    _, header = read_dicom(dicom_bytes(_gradient(), BodyPartExamined=""), 10_000_000)
    assert "BodyPartExamined" not in header and "PatientAge" not in header
    assert decode(dicom_bytes(_gradient(), ViewPosition="LL"), 10_000_000).header["ViewPosition"] == "LL"
    # The patient, as written: which films are one patient's (cxr assess groups by it).
    assert read_dicom(dicom_bytes(_gradient(), PatientID="Mrn-0042 "), 10_000_000)[1]["PatientID"] == "Mrn-0042"
    # The scanner, manufacturer and model as written (cxr assess gives figures per scanner).
    assert read_dicom(dicom_bytes(_gradient(), Manufacturer="Acme ", ManufacturerModelName="DR 9"),
                      10_000_000)[1]["scanner"] == "Acme DR 9"
    assert read_dicom(dicom_bytes(_gradient(), Manufacturer="Acme"), 10_000_000)[1]["scanner"] == "Acme"
