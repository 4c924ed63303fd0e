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


def test_subgroups_plot_has_a_row_per_value_and_a_marker_per_figure_measured(tmp_path):
    from PIL import Image

    def group(**figures) -> dict:
        return {"films": 10, **{k: v for k, v in figures.items()},
                **{f"{k}_ci95": {"low": v - 0.1, "high": min(v + 0.05, 1.0)} for k, v in figures.items()}}

    both = {"scanner": {"A": group(sensitivity=0.9, specificity=0.8), "B": group(sensitivity=0.95, specificity=0.6)}}
    fewer = {"scanner": {"A": group(sensitivity=0.9, specificity=0.8), "B": group(specificity=0.6)}}
    more = {"scanner": {v: group(sensitivity=0.9, specificity=0.8) for v in "ABCDEF"}}

    def blue(path) -> int:  # matplotlib's default blue, the markers and their bars
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int(((abs(rgb[..., 0] - 31) < 30) & (abs(rgb[..., 1] - 119) < 30) & (abs(rgb[..., 2] - 180) < 30)).sum())

    paths = [plots.subgroups(d, tmp_path / f"{i}.png", "site-b") for i, d in enumerate((both, fewer, more))]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert blue(paths[1]) < blue(paths[0])
    assert Image.open(paths[2]).height > Image.open(paths[0]).height


def test_roc_curves_draws_each_model_in_its_own_colour_with_its_operating_point(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 100)
    good, poor = y + rng.normal(0, 0.5, 200), y + rng.normal(0, 2.0, 200)

    def orange(path) -> int:  # matplotlib's second colour: the second model
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int(((abs(rgb[..., 0] - 255) < 30) & (abs(rgb[..., 1] - 127) < 30) & (rgb[..., 2] < 60)).sum())

    one = plots.roc_curves(y, [("this", good, 0.5, 0.9)], tmp_path / "one.png")
    two = plots.roc_curves(y, [("this", good, 0.5, 0.9), ("that", poor, 0.5, 0.6)], tmp_path / "two.png", "a title")
    assert one.read_bytes()[:8] == two.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert orange(one) == 0 and orange(two) > 100
