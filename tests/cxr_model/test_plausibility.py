import numpy as np
import pytest

from cxr_model.config import PredictConfig
from cxr_model.images import Decoded
from cxr_model.plausibility import implausibility
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
