import re

from benchmarks.train_speed import main, measure_augmenter
from cxr_model.config import AugmentConfig, Config, PreprocessConfig, TrainConfig


def test_augmenter_timing_names_every_layer_of_the_configured_augmenter():
    from cxr_model.augmentation import build_augmenter

    for fused in (False, True):
        cfg = Config(preprocess=PreprocessConfig(image_size=32),
                     train=TrainConfig(batch_size=4, augment=AugmentConfig(fused=fused)))
        rows = measure_augmenter(cfg, repeats=2)
        def base(name):  # Keras numbers a second layer of a kind: random_zoom_1
            return re.sub(r"_\d+$", "", name)

        names = [base(layer.name) for layer in build_augmenter(cfg.train.augment, cfg.train.seed).layers]
        assert [base(name) for name, _ in rows] == ["whole augmenter", *names]
        assert all(ms > 0 for _, ms in rows)
        assert ("random_geometry" in names) == fused


def test_set_overrides_reach_the_augmenter_timing(capsys):
    assert main(["--augmenter", "--set", "preprocess.image_size=32", "--set", "train.batch_size=2",
                 "--set", "train.augment.fused=true"]) == 0
    out = capsys.readouterr().out
    assert "batch of 2 at 32 px" in out and "random_geometry" in out and "random_rotation" not in out
