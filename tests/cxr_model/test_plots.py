import numpy as np

from cxr_model import plots


def test_hardest_indices_pick_the_most_wrong_images_of_each_class_worst_first():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    p = np.array([0.1, 0.9, 0.5, 0.2, 0.95, 0.05, 0.7, 0.6])
    normal, pneumonia = plots.hardest_indices(y, p, per_class=2)
    assert normal.tolist() == [1, 6]
    assert pneumonia.tolist() == [5, 3]
    normal, pneumonia = plots.hardest_indices(y, p, per_class=10)
    assert sorted(normal.tolist()) == [0, 1, 2, 6] and sorted(pneumonia.tolist()) == [3, 4, 5, 7]


def test_hardest_cases_writes_a_png_even_with_fewer_images_than_slots(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (5, 16, 16, 1), dtype=np.uint8)
    y = np.array([0, 1, 1, 0, 1])
    out = plots.hardest_cases(x, y, rng.random(5), 0.5, tmp_path / "hard.png", per_class=4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_scores_marks_a_probe_that_doubles_the_normal_score(tmp_path):
    from PIL import Image

    def row(p: float) -> dict:
        return {"auc": 0.99, "normal_mean_p": p, "pneumonia_mean_p": 0.9, "normal_ratio": p / 0.05}

    flat = plots.probe_scores({"as_is": row(0.05), "a": row(0.05), "b": row(0.06)}, {"a": "A"}, tmp_path / "f.png")
    shortcut = plots.probe_scores({"as_is": row(0.05), "a": row(0.05), "b": row(0.30)}, {}, tmp_path / "s.png")

    def reddish(path) -> int:
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int(((rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum())

    assert flat.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert reddish(flat) == 0 and reddish(shortcut) > 100
