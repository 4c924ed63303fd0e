import io

import numpy as np
import pytest
from PIL import Image

from cxr_model.dicom import pseudonym
from cxr_model.images import ImageError, inspect_file, load_for_model, open_image, resize_square, to_gray
from tests.dicom_files import dicom_bytes


def _png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_sixteen_bit_png_is_stretched_to_eight_bit():
    arr = np.linspace(1000, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    img = open_image(_png_bytes(Image.fromarray(arr)), 10_000_000)
    assert img.mode.startswith("I")
    gray = to_gray(img)
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255


def test_rgba_is_composited_and_cmyk_converted():
    rgba = Image.new("RGBA", (8, 8), (200, 200, 200, 255))
    rgba.putpixel((0, 0), (255, 255, 255, 0))  # transparent pixel goes black
    gray = to_gray(open_image(_png_bytes(rgba), 10_000))
    assert gray[0, 0] == 0 and gray[4, 4] == 200
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))
    assert to_gray(open_image(_png_bytes(cmyk, "JPEG"), 10_000)).mean() > 250


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty file"),
        (b"this is a text file pretending to be a jpeg", "cannot decode"),
        (None, "cannot decode"),  # truncated JPEG
    ],
)
def test_broken_files_raise_with_a_reason(payload, reason):
    if payload is None:
        payload = _png_bytes(Image.new("L", (64, 64), 128), "JPEG")[:200]
    with pytest.raises(ImageError, match=reason):
        open_image(payload, 10_000_000)


def test_oversized_image_is_refused_before_decoding(tmp_path):
    data = _png_bytes(Image.new("L", (3000, 3000), 0))
    with pytest.raises(ImageError, match="decompression-bomb guard: 3000x3000 pixels exceeds the 1,000,000-pixel limit; not decoded"):
        open_image(data, 1_000_000)


def test_inspect_records_errors_instead_of_raising(tmp_path):
    bad = tmp_path / "bad.jpeg"
    bad.write_bytes(b"not an image")
    facts = inspect_file(bad, 1_000_000)
    assert facts.error.startswith("cannot decode") and facts.width == 0 and len(facts.sha256) == 64


def test_load_for_model_gives_square_uint8(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (100, 60), (10, 10, 10)).save(path)
    arr = load_for_model(path, 32, 1_000_000)
    assert arr.shape == (32, 32) and arr.dtype == np.uint8 and int(arr[5, 5]) == 10
    assert resize_square(arr, 32) is arr


def test_inspect_reads_a_dicom_film_and_keeps_only_a_pseudonym_of_its_patient(tmp_path):
    film = tmp_path / "1.2.3.dcm"
    film.write_bytes(dicom_bytes(np.full((40, 56), 7, dtype=np.uint16), PatientID="MRN-0042"))
    facts = inspect_file(film, 1_000_000)
    assert (facts.mode, facts.width, facts.height, facts.error) == ("DICOM", 56, 40, "")
    assert facts.patient == pseudonym("MRN-0042") != pseudonym("MRN-0043")
    assert "MRN" not in repr(facts)
