"""Atomic writes and safe loading of checkpoints."""
import os

import pytest
import torch

from darts.run.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from darts.errors import CheckpointError


def test_round_trip(tmp_path):
    path = str(tmp_path / "c.pt")
    save_checkpoint({"kind": "search", "t": torch.arange(3), "epoch": 2}, path)
    s = load_checkpoint(path, kind="search")
    assert s["epoch"] == 2 and torch.equal(s["t"], torch.arange(3))
    with pytest.raises(CheckpointError, match="expected a 'final'"):
        load_checkpoint(path, kind="final")


def test_truncated_checkpoint(tmp_path):
    path = str(tmp_path / "c.pt")
    save_checkpoint({"kind": "search", "t": torch.randn(1000)}, path)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot load"):
        load_checkpoint(path)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_object_is_refused(tmp_path, capfd):
    path = str(tmp_path / "c.pt")
    torch.save({"format": 1, "kind": "search", "x": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert "pwned" not in capfd.readouterr().out


def test_foreign_file_is_refused(tmp_path):
    path = str(tmp_path / "c.pt")
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "none.pt"))


def test_disk_full_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "c.pt")
    save_checkpoint({"kind": "search", "epoch": 1}, path)

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint({"kind": "search", "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]  # no temporary file left behind


def test_atomic_write_replaces(tmp_path):
    p = str(tmp_path / "f")
    atomic_write_bytes(p, b"a")
    atomic_write_bytes(p, b"bb")
    assert open(p, "rb").read() == b"bb"
