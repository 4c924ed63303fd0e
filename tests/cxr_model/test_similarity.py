import io

import numpy as np
from PIL import Image

from cxr_model.images import resize_square
from cxr_model.similarity import nearest_in_other_splits, thumbnails
from tests.conftest import synthetic_xray


def _films(images: list[Image.Image], size: int = 32) -> np.ndarray:
    return np.stack([resize_square(np.asarray(img.convert("L")), size) for img in images])


def _reexported(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    img.point(lambda v: 255 * (v / 255) ** 0.9).save(buf, format="JPEG", quality=85)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_thumbnails_are_centred_unit_rows_at_most_64_px():
    films = np.random.default_rng(0).integers(0, 256, (3, 128, 128), dtype=np.uint8)
    t = thumbnails(films)
    assert t.shape == (3, 64 * 64)
    assert np.allclose(t.mean(axis=1), 0, atol=1e-6) and np.allclose(np.linalg.norm(t, axis=1), 1)
    assert thumbnails(films[:, :100, :100]).shape == (3, 100 * 100)  # no integer factor: kept whole
    assert np.all(thumbnails(np.zeros((1, 32, 32), np.uint8)) == 0)  # a blank film matches nothing


def test_a_reexported_film_in_another_split_is_found_and_distinct_films_are_not():
    originals = [synthetic_xray(s, label) for s in range(30) for label in ("NORMAL", "PNEUMONIA")]
    copy_of = 7
    films = _films(originals + [_reexported(originals[copy_of])])
    splits = np.array(["train"] * 40 + ["test"] * 20 + ["test"])
    best, where = nearest_in_other_splits(films, splits, chunk=16)
    assert where[-1] == copy_of and best[-1] > 0.99
    assert where[copy_of] == len(films) - 1
    others = np.setdiff1d(np.arange(len(films)), [copy_of, len(films) - 1])
    assert best[others].max() < 0.99
    for i in range(len(films)):
        assert splits[where[i]] != splits[i]


def test_copies_within_one_split_are_not_near_copies_across_splits():
    film = synthetic_xray(1, "NORMAL")
    films = _films([film, _reexported(film), synthetic_xray(2, "NORMAL")])
    best, where = nearest_in_other_splits(films, np.array(["train", "train", "test"]))
    assert best[0] < 0.99 and best[1] < 0.99 and where[2] in (0, 1)
    best, where = nearest_in_other_splits(films, np.array(["train"] * 3))
    assert np.all(where == -1) and np.all(best == 0)
