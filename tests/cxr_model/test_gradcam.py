import numpy as np

from cxr_model.gradcam import GradCam, feature_layer, save_overlay
from cxr_model.model import build_ensemble, keras
from keras import layers


def _left_half_model(size: int = 32, top: bool = False) -> keras.Model:
    """A model whose output depends on the left (or top) half of the image only (and rises with it)."""
    mask = np.zeros((1, size, size, 1), dtype=np.float32)
    if top:
        mask[:, : size // 2] = 1.0
    else:
        mask[:, :, : size // 2] = 1.0
    inputs = keras.Input((size, size, 1))
    x = layers.Conv2D(4, 3, padding="same", name="conv", kernel_initializer=keras.initializers.Constant(1e-4))(inputs)
    x = layers.Lambda(lambda t: t * mask, name="left_only")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid", kernel_initializer="ones")(x))


def test_heatmap_points_at_the_region_the_model_uses():
    model = _left_half_model()
    assert feature_layer(model).name == "left_only"
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype(np.float32)
    maps = GradCam(model).heatmaps(x)
    assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    assert all(m.sum() > 0 for m in maps)
    for m in maps:
        assert m[:, 16:].sum() == 0 and m[:, :16].sum() > 0


def test_overlay_png_keeps_the_aspect_and_size(tmp_path):
    gray = np.random.default_rng(0).integers(0, 255, (100, 200)).astype(np.uint8)
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[0, 0] = 1.0
    path = save_overlay(gray, heat, tmp_path / "o.png", size=256, caption="P 0.9")
    from PIL import Image

    img = Image.open(path)
    assert img.size == (256, 128 + 18) and img.mode == "RGB"


def test_ensemble_heatmap_covers_what_each_member_uses():
    ensemble = build_ensemble([_left_half_model(), _left_half_model(top=True)])
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    for m in GradCam(ensemble).heatmaps(x):
        assert m[16:, 16:].sum() == 0  # neither member looks at the bottom-right quarter
        assert m[16:, :16].sum() > 0 and m[:16, 16:].sum() > 0  # left member, top member


def test_feature_layer_is_never_an_input_normalisation():
    """A model whose convolutions all end below min_cells: the last spatial layer is a feature
    map, not the full-size normalised input (for every normalisation the model can use)."""
    import dataclasses

    from cxr_model.config import ModelConfig
    from cxr_model.model import build_model
    from cxr_model.normalization import NORMALIZATION_LAYERS

    for normalize in ("rescale", "per_image", "equalize", "clahe"):
        cfg = dataclasses.replace(ModelConfig(filters=(8, 16), dense_units=8), arch="residual", normalize=normalize)
        model = build_model(16, cfg, seed=1)
        assert any(layer.name in NORMALIZATION_LAYERS for layer in model.layers)
        layer = feature_layer(model, min_cells=9)  # only the 16x16 input is that fine
        assert layer.name not in NORMALIZATION_LAYERS and layer.output.shape[1] < 9
