import keras
import numpy as np
import pytest

from cxr_model.augmentation import RandomGeometry, RandomScanner, affine_transforms, build_augmenter
from cxr_model.config import AugmentConfig

GEOMETRY_OFF = dict(rotation_deg=0, zoom=0, zoom_in=0, shift=0)
INTENSITY_OFF = dict(brightness=0, contrast=0, gamma=0, blur=0, noise=0)


@pytest.mark.parametrize("fused", [False, True])
def test_augmenter_keeps_shape_and_range_and_changes_pixels(fused):
    aug = build_augmenter(AugmentConfig(fused=fused), seed=1)
    x = np.full((4, 32, 32, 1), 120.0, dtype=np.float32)
    x[:, 8:24, 8:24] = 200.0
    out = np.asarray(aug(x, training=True))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, x)
    assert not any(type(layer).__name__ == "RandomFlip" for layer in aug.layers)


def test_sharpen_only_ever_enhances_edges():
    off = dict(rotation_deg=0, zoom=0, shift=0, brightness=0, contrast=0, gamma=0, blur=0, noise=0)
    aug = build_augmenter(AugmentConfig(**off, sharpen=0.5), seed=3)
    x = np.full((16, 32, 32, 1), 100.0, dtype=np.float32)
    x[:, 8:24, 8:24] = 160.0

    def edge(v):
        return np.abs(np.diff(v, axis=2)).sum(axis=(1, 2, 3))

    out = np.asarray(aug(x, training=True))
    assert (edge(out) >= edge(x) - 1e-3).all() and (edge(out) > edge(x) + 1).any()
    assert not any(type(layer).__name__ == "RandomSharpness"
                   for layer in build_augmenter(AugmentConfig(**off), seed=3).layers)


@pytest.mark.parametrize("fused", [False, True])
def test_zoom_in_only_crops_never_shrinks_the_chest(fused):
    only_crops = AugmentConfig(rotation_deg=0, zoom=0, zoom_in=0.5, shift=0, brightness=0, contrast=0, fused=fused)
    aug = build_augmenter(only_crops, seed=3)
    x = np.full((16, 64, 64, 1), 100.0, dtype=np.float32)
    x[:, 24:40, 24:40] = 200.0
    bright = (np.asarray(aug(x, training=True)) > 150).sum(axis=(1, 2, 3))
    # Zooming in enlarges the centred square; a zoom-out would shrink it below 16 x 16.
    assert (bright >= 16 * 16 - 2 * 16).all()
    assert np.median(bright) > 1.3 * 16 * 16


def test_downscale_softens_about_half_the_images_and_leaves_the_rest():
    off = dict(rotation_deg=0, zoom=0, shift=0, brightness=0, contrast=0, gamma=0, blur=0, noise=0)
    aug = build_augmenter(AugmentConfig(**off, downscale=3.0), seed=5)
    # A one-pixel checkerboard: any shrink-and-enlarge flattens it towards grey.
    x = np.broadcast_to(np.indices((32, 32)).sum(axis=0) % 2 * 200.0 + 20.0, (64, 32, 32)).copy()
    x = x[..., None].astype(np.float32)
    out = np.asarray(aug(x, training=True))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    untouched = np.all(out == x, axis=(1, 2, 3))
    softened = np.abs(np.diff(out, axis=2)).mean(axis=(1, 2, 3)) < 0.5 * 200.0
    assert (untouched | softened).all()
    assert 16 <= untouched.sum() <= 48
    assert np.array_equal(np.asarray(aug(x, training=False)), x)
    assert not any(type(layer).__name__ == "RandomResolution"
                   for layer in build_augmenter(AugmentConfig(**off), seed=5).layers)


def test_corner_mask_blacks_out_four_equal_corner_squares_in_about_half_the_images():
    off = dict(rotation_deg=0, zoom=0, shift=0, brightness=0, contrast=0, gamma=0, blur=0, noise=0)
    aug = build_augmenter(AugmentConfig(**off, corners=0.3), seed=4)
    x = np.full((64, 40, 40, 1), 150.0, dtype=np.float32)
    out = np.asarray(aug(x, training=True))[..., 0]
    masked = 0
    for img in out:
        dark = img == 0
        assert np.array_equal(img[~dark], np.full((~dark).sum(), 150.0))  # nothing else changes
        k = int(dark[0].sum() // 2)  # side of each corner square
        if k == 0:
            assert not dark.any()
            continue
        masked += 1
        expected = np.zeros_like(dark)
        for rows in (slice(0, k), slice(40 - k, 40)):
            for cols in (slice(0, k), slice(40 - k, 40)):
                expected[rows, cols] = True
        assert np.array_equal(dark, expected) and k <= 0.3 * 40 + 1
    assert 16 <= masked <= 48
    assert np.array_equal(np.asarray(aug(x, training=False)), x)
    assert not any(type(layer).__name__ == "RandomCornerMask"
                   for layer in build_augmenter(AugmentConfig(**off), seed=4).layers)


def test_erase_fills_one_rectangle_with_the_mean_grey_in_about_half_the_images():
    off = {**GEOMETRY_OFF, **INTENSITY_OFF}
    aug = build_augmenter(AugmentConfig(**off, erase=0.25), seed=6)
    x = np.zeros((64, 40, 40, 1), dtype=np.float32)
    x[:, :20] = 200.0  # top half bright, bottom dark: mean grey 100
    out = np.asarray(aug(x, training=True))[..., 0]
    erased, shapes = 0, set()
    for img in out:
        grey = img == 100.0
        assert np.array_equal(img[~grey], x[0, ..., 0][~grey])  # nothing else changes
        if not grey.any():
            continue
        erased += 1
        rows, cols = np.flatnonzero(grey.any(axis=1)), np.flatnonzero(grey.any(axis=0))
        assert grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # one solid rectangle
        assert grey.sum() <= 0.25 * 40 * 40 * 1.2  # rounding to whole pixels
        shapes.add((len(rows), len(cols)))
    assert 16 <= erased <= 48 and len(shapes) > 5  # sizes and shapes vary
    assert np.array_equal(np.asarray(aug(x, training=False)), x)
    assert not any(type(layer).__name__ == "RandomErase"
                   for layer in build_augmenter(AugmentConfig(**off), seed=6).layers)


def test_aspect_stretches_each_image_along_one_axis_only():
    off = {**GEOMETRY_OFF, **INTENSITY_OFF}
    aug = build_augmenter(AugmentConfig(**off, aspect=0.25), seed=7)
    x = np.zeros((64, 40, 40, 1), dtype=np.float32)
    x[:, 10:30, 10:30] = 200.0  # a centred square, 20 px a side
    out = np.asarray(aug(x, training=True))[..., 0]
    taller = wider = 0
    for img in out:
        bright = img > 100.0
        height = np.flatnonzero(bright.any(axis=1)).size
        width = np.flatnonzero(bright.any(axis=0)).size
        assert min(height, width) == 20  # one side keeps its length
        assert max(height, width) <= 20 / 0.75 + 1  # the other grows by at most 1 / (1 - 0.25)
        taller += height > 21
        wider += width > 21
    assert taller > 10 and wider > 10  # both directions, drawn per image
    assert np.array_equal(np.asarray(aug(x, training=False)), x)
    assert not any(type(layer).__name__ == "RandomAspect"
                   for layer in build_augmenter(AugmentConfig(**off), seed=7).layers)


def _warp(image: np.ndarray, angle=0.0, zoom=1.0, tx=0.0, ty=0.0) -> np.ndarray:
    """One image through affine_transforms with the given parameters."""
    h, w = image.shape
    one = lambda v: np.array([v], dtype=np.float32)  # noqa: E731
    transform = affine_transforms(one(angle), one(zoom), one(tx), one(ty), float(h), float(w))
    out = keras.ops.image.affine_transform(image[None, :, :, None].astype(np.float32), transform,
                                           interpolation="bilinear", fill_mode="constant")
    return np.asarray(out)[0, :, :, 0]


def test_affine_transforms_rotate_zoom_and_shift_about_the_centre():
    image = np.random.default_rng(0).uniform(0, 255, (9, 9)).astype(np.float32)
    np.testing.assert_allclose(_warp(image), image, atol=1e-4)
    quarter = _warp(image, angle=np.pi / 2)
    assert any(np.allclose(quarter, np.rot90(image, k), atol=1e-3) for k in (1, 3))
    # Zoom 0.5 reads the central half: every second output pixel is an input pixel of it.
    np.testing.assert_allclose(_warp(image, zoom=0.5)[::2, ::2], image[2:7, 2:7], atol=1e-4)
    # A shift moves the film by whole pixels and fills the uncovered edge with black.
    shifted = _warp(image, tx=2.0, ty=-1.0)
    np.testing.assert_allclose(shifted[1:, :-2], image[:-1, 2:], atol=1e-4)
    assert not shifted[:, -2:].any() and not shifted[0].any()


def _bar_angles(images: np.ndarray) -> np.ndarray:
    """Orientation in degrees of the bright bar in each image, from its second moments."""
    angles = []
    for img in images[..., 0]:
        rows, cols = np.nonzero(img > 100)
        cov = np.cov(np.stack([cols - cols.mean(), rows - rows.mean()]))
        angles.append(np.degrees(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])))
    return np.array(angles)


def test_fused_geometry_draws_each_change_within_its_range_per_image():
    bar = np.zeros((64, 65, 65, 1), dtype=np.float32)
    bar[:, 31:34, 12:53] = 200.0
    turned = np.asarray(RandomGeometry(rotation_deg=7, seed=1)(bar, training=True))
    angles = _bar_angles(turned)
    assert np.abs(angles).max() <= 7.5 and np.abs(angles).max() > 4 and (angles > 0).any() and (angles < 0).any()
    dot = np.zeros((64, 65, 65, 1), dtype=np.float32)
    dot[:, 30:35, 30:35] = 200.0
    moved = np.asarray(RandomGeometry(shift=0.1, seed=2)(dot, training=True))[..., 0]
    centres = np.array([[np.average(np.nonzero(m > 0)[k], weights=m[m > 0]) for k in (0, 1)] for m in moved])
    offsets = centres - 32.0
    assert np.abs(offsets).max() <= 0.1 * 65 + 0.5 and np.abs(offsets).max() > 3
    assert len(np.unique(np.round(offsets, 1), axis=0)) > 32  # a fresh draw per image
    sizes = (np.asarray(RandomGeometry(zoom_out=0.3, zoom_in=0.3, seed=3)(dot, training=True)) > 100).sum(axis=(1, 2, 3))
    assert sizes.min() < 25 < sizes.max()  # some films zoomed out, some in
    assert np.array_equal(np.asarray(RandomGeometry(rotation_deg=7, seed=1)(bar, training=False)), bar)


def test_fused_augmenter_resamples_once_and_keeps_the_scanner_curve():
    fused = build_augmenter(AugmentConfig(fused=True), seed=1)
    kinds = [type(layer).__name__ for layer in fused.layers]
    assert kinds.count("RandomGeometry") == 1
    assert not {"RandomRotation", "RandomZoom", "RandomTranslation"} & set(kinds)
    assert "RandomGeometry" not in [type(layer).__name__ for layer in build_augmenter(AugmentConfig(), seed=1).layers]
    assert "RandomGeometry" not in [type(layer).__name__ for layer in
                                    build_augmenter(AugmentConfig(**GEOMETRY_OFF, fused=True), seed=1).layers]
    # exp/log computes the same gamma curve as the power op, from the same random draws.
    x = np.random.default_rng(1).uniform(0, 255, (8, 16, 16, 1)).astype(np.float32)
    power, exp_log = (np.asarray(RandomScanner(gamma=0.3, exp_log=flag, seed=7)(x, training=True))
                      for flag in (False, True))
    assert not np.allclose(power, x, atol=1)
    np.testing.assert_allclose(exp_log, power, rtol=1e-4, atol=1e-3)


def test_shifted_sum_blur_draws_and_blurs_as_keras_does():
    from cxr_model.augmentation import ShiftedSumBlur, shifted_sum_blur_is_exact, through_pipeline

    x = np.random.default_rng(3).uniform(0, 255, (8, 24, 24, 1)).astype(np.float32)
    ours = ShiftedSumBlur(0.5, sigma=(0.8, 1.2), value_range=(0, 255), seed=9)
    theirs = keras.layers.RandomGaussianBlur(0.5, sigma=(0.8, 1.2), value_range=(0, 255), seed=9)
    outputs = [np.concatenate([b.numpy() for b in through_pipeline(blur, x, 4)]) for blur in (ours, theirs)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=0, atol=1e-3)  # the same blurs of the same films
    changed = np.abs(outputs[0] - x).reshape(8, -1).max(axis=1) > 1
    assert 0 < changed.sum() < 8  # a blur, on some films only (drawn per film)
    if shifted_sum_blur_is_exact():
        np.testing.assert_array_equal(outputs[0], outputs[1])
    # Zero padding, as the depthwise convolution pads: a flat film darkens at its edges only.
    flat = ShiftedSumBlur(1.0, sigma=(1.0, 1.0), value_range=(0, 255), seed=1)(np.full((8, 8, 8, 1), 100.0, np.float32),
                                                                               training=True)
    blurred = [f[..., 0] for f in np.asarray(flat) if not np.allclose(f, 100.0)]
    assert blurred
    for f in blurred:
        assert np.allclose(f[1:-1, 1:-1], 100.0) and f[0, 0] < f[0, 4] < 100.0


@pytest.mark.parametrize("exact", [True, False])
def test_augmenter_uses_the_shifted_sum_blur_only_where_it_is_exact(monkeypatch, exact):
    from cxr_model import augmentation

    monkeypatch.setattr(augmentation, "shifted_sum_blur_is_exact", lambda: exact)
    kinds = [type(layer) for layer in build_augmenter(AugmentConfig(blur=0.3), seed=1).layers]
    assert (augmentation.ShiftedSumBlur in kinds) == exact
    assert sum(issubclass(kind, keras.layers.RandomGaussianBlur) for kind in kinds) == 1  # one blur either way
