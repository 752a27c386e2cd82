"""The Python API: darts.search and darts.retrain with the options of the command line, on the embedded digits and
on a user's own Dataset or tensors, and the clear errors for bad data."""
import json
import os

import pytest
import torch
from torch.utils.data import Dataset

import darts
from darts.errors import ConfigError, DataError

pytestmark = pytest.mark.slow
TINY = dict(init_channels=4, layers=3, nodes=2, batch_size=32, progress=False)


class Blobs(Dataset):
    """A user's data set: 3 classes of 2x12x12 images, each class a different mean."""

    def __init__(self, n=90, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 3
        self.x = torch.randn(n, 2, 12, 12, generator=g) + self.y.view(-1, 1, 1, 1).float()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_search_then_retrain_on_a_users_dataset(tmp_path, one_thread):
    result = darts.search(train_data=Blobs(), num_classes=3, epochs=2, out=str(tmp_path / "s"), **TINY)
    assert isinstance(result.genotype, darts.Genotype) and result.run_dir == str(tmp_path / "s")
    assert [r["epoch"] for r in result.metrics] == [1, 2]
    saved = json.load(open(tmp_path / "s" / "genotype.json"))
    assert saved == result.genotype.to_dict() == result.metrics[-1]["genotype"]
    cfg = json.load(open(tmp_path / "s" / "config.json"))["config"]
    assert cfg["dataset"] == "custom" and cfg["init_channels"] == 4 and cfg["layers"] == 3
    assert result.model.stem[0].in_channels == 2 and result.model.classifier.out_features == 3  # from the data

    final = darts.retrain(result.genotype, train_data=Blobs(), test_data=Blobs(30, seed=1), epochs=1,
                          out=str(tmp_path / "f"), init_channels=4, layers=3, batch_size=30, progress=False)
    assert 0.0 <= final.test_accuracy <= 1.0
    assert final.params == darts.count_parameters(final.model) > 0
    assert not final.model.training and final.metrics[-1]["test_acc"] == final.test_accuracy
    x = Blobs(4).x
    assert final.model(x)[0].shape == (4, 3)


def test_search_on_tensors_and_digits_with_any_cli_option(tmp_path, one_thread):
    x, y = torch.randn(64, 1, 8, 8), torch.arange(64) % 4
    r = darts.search(train_data=(x, y), epochs=1, method="pcdarts", pc_k=2, out=str(tmp_path / "t"), **TINY)
    assert r.model.classifier.out_features == 4 and r.metrics[-1]["epoch"] == 1
    assert json.load(open(tmp_path / "t" / "config.json"))["config"]["pc_k"] == 2
    r = darts.search(dataset="digits", epochs=1, out=str(tmp_path / "d"), space="nb201", nb201_cells=1,
                     batch_size=128, init_channels=4, progress=False)
    assert r.genotype.to_dict()["format"] == "nb201-genotype/1"


class Odd(Blobs):
    def __init__(self, kind):
        super().__init__(12)
        self.kind = kind

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        if self.kind == "size" and i == 7:
            x = torch.randn(2, 10, 10)
        if self.kind == "label" and i == 5:
            y = 9
        return x, y


@pytest.mark.parametrize("data,num_classes,message", [
    (Blobs(0), None, "train_data is empty"),
    ((torch.randn(10, 1, 8, 8), torch.zeros(10, dtype=torch.long)), None, "needs at least 2"),
    ((torch.randn(10, 1, 8, 8), torch.arange(10) % 2), 1, "out of range for 1 classes"),
    (Odd("label"), 3, "train_data[5]: label 9 is out of range for 3 classes"),
    ((torch.randn(10, 1, 8, 8), torch.rand(10)), None, "integer class indices"),
    ([1, 2, 3], None, "train_data[0] must be an (image, label) pair, got int"),
    (object(), None, "must be a torch Dataset"),
])
def test_bad_data_is_a_data_error_naming_it(data, num_classes, message, tmp_path):
    with pytest.raises(DataError) as e:
        darts.search(train_data=data, num_classes=num_classes, epochs=1, out=str(tmp_path / "x"), **TINY)
    assert message in str(e.value)
    assert not os.path.exists(tmp_path / "x")


def test_mixed_image_sizes_are_named_where_they_are_read(tmp_path, one_thread):
    with pytest.raises(DataError, match=r"train_data\[7\]: image of shape \(2, 10, 10\), but the first is"):
        darts.search(train_data=Odd("size"), epochs=1, out=str(tmp_path / "x"), **{**TINY, "batch_size": 4})


def test_api_options_are_validated_like_the_command_lines(tmp_path):
    with pytest.raises(ConfigError, match="--epochs must be positive"):
        darts.search(epochs=0, out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="--epochs must be an integer"):
        darts.search(epochs="5", out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="--pc-k is an option of --method pcdarts"):
        darts.search(pc_k=2, out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="unknown option --bogus"):
        darts.search(bogus=1, out=str(tmp_path / "a"))
    assert not os.path.exists(tmp_path / "a")
