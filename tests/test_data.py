"""Data sets, the search split and the seeded, resumable samplers."""
import os

import pytest
import torch

from darts.data import BatchStream, Cutout, PassSampler, load_data, load_digits, make_loader, search_split
from darts.errors import DataError


def test_digits_embedded_set():
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    d = load_data("digits")
    assert len(d.train) == 1500 and len(d.test) == 297 and d.num_classes == 10 and d.in_channels == 1


def test_search_split_is_disjoint_and_complete():
    a, b = search_split(10, 0.5)
    assert list(a) == [0, 1, 2, 3, 4] and list(b) == [5, 6, 7, 8, 9]
    with pytest.raises(DataError):
        search_split(10, 0.01)


def test_pass_sampler_is_a_seeded_permutation():
    s = PassSampler(range(20, 30), seed=3)
    first = list(s)
    assert sorted(first) == list(range(20, 30))
    assert list(s) == first
    s.set_pass(1)
    assert list(s) != first
    s.set_pass(0, start=4)
    assert list(s) == first[4:]


def test_batch_stream_resumes_exactly():
    d = load_data("synthetic")
    loader = lambda: make_loader(d.train, range(100), 32, seed=1, num_workers=0)
    a = BatchStream(loader())
    seq = [next(a)[1] for _ in range(9)]  # crosses two pass boundaries (4 batches per pass)
    b = BatchStream(loader())
    for _ in range(5):
        next(b)
    c = BatchStream(loader())
    c.load_state_dict(b.state_dict())
    rest = [next(c)[1] for _ in range(4)]
    for u, v in zip(seq[5:], rest):
        assert torch.equal(u, v)


def test_batch_larger_than_split_is_an_error():
    d = load_data("digits")
    with pytest.raises(DataError, match="larger than the split"):
        make_loader(d.train, range(10), 64, 0, 0)


def test_cutout_zeroes_a_square():
    torch.manual_seed(0)
    img = torch.ones(3, 16, 16)
    out = Cutout(8)(img)
    zeros = (out == 0).all(0).sum()
    assert 0 < zeros <= 64 and img.min() == 1  # input not modified


def test_missing_data_directories_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data("cifar10", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="needs --data"):
        load_data("cifar10", None)
    with pytest.raises(DataError, match="not found or corrupted"):
        load_data("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        load_data("folder", str(tmp_path / "nope"))


def _write_png_tree(root, classes):
    from PIL import Image

    for c in classes:
        os.makedirs(root / c, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (12, 12), color=(i * 40, 0, 0)).save(root / c / f"{i}.png")


def test_image_folder(tmp_path):
    _write_png_tree(tmp_path / "train", ["cat", "dog"])
    _write_png_tree(tmp_path / "val", ["cat", "dog"])
    d = load_data("folder", str(tmp_path), image_size=16)
    assert d.num_classes == 2 and len(d.train) == 6 and len(d.test) == 6
    assert d.train[0][0].shape == (3, 16, 16)


def test_image_folder_needs_two_classes(tmp_path):
    _write_png_tree(tmp_path, ["only"])
    with pytest.raises(DataError, match="at least 2"):
        load_data("folder", str(tmp_path))


def test_empty_image_folder(tmp_path):
    with pytest.raises(DataError):
        load_data("folder", str(tmp_path))
