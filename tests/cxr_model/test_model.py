import dataclasses

import keras
import numpy as np
import pytest

from cxr_model.config import ModelConfig
from cxr_model.model import build_model
from tests.conftest import grey_films


@pytest.mark.parametrize("normalize", ["equalize", "clahe"])
def test_equalizing_model_round_trips_through_a_saved_file(tmp_path, normalize):
    cfg = dataclasses.replace(ModelConfig(filters=(8, 16), dense_units=8), normalize=normalize, clahe_tiles=4)
    model = build_model(32, cfg, seed=1)
    x = grey_films(n=4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # The same films under another exposure curve get the same prediction.
    np.testing.assert_allclose(loaded.predict(2 * x + 30, verbose=0), model.predict(x, verbose=0), atol=1e-5)
