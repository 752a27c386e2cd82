"""A run directory: config.json, metrics.jsonl, log.txt, TensorBoard events and the checkpoint, in one place.

Existing runs are never overwritten: writing into a directory that holds a run needs ``--resume``.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time

import torch

from .checkpoint import atomic_write_text
from ..errors import ConfigError

log = logging.getLogger(__name__)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (suffixed ``-dirty`` if modified), if it is one."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


class RunDir:
    """Files of one run. Use :meth:`create` for a new run and :meth:`open_existing` to resume."""

    def __init__(self, path: str):
        self.path = path
        self._writer = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @classmethod
    def create(cls, path: str) -> "RunDir":
        cls.check_new(path)
        os.makedirs(path, exist_ok=True)
        return cls(path)

    @staticmethod
    def check_new(path: str) -> None:
        """Raise :class:`ConfigError` unless ``path`` can hold a new run (absent, or holding no run)."""
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"--out {path!r} exists and is not a directory")
        if os.path.isdir(path) and (os.path.exists(os.path.join(path, CONFIG)) or
                                    os.path.exists(os.path.join(path, CHECKPOINT))):
            raise ConfigError(f"{path!r} already holds a run; continue it with --resume {path}, or choose another "
                              "--out (nothing was overwritten)")

    @classmethod
    def open_existing(cls, path: str) -> "RunDir":
        if not os.path.isdir(path):
            raise ConfigError(f"--resume {path!r}: no such run directory")
        if not os.path.exists(os.path.join(path, CONFIG)):
            raise ConfigError(f"--resume {path!r}: no {CONFIG} there, so it is not a run directory")
        return cls(path)

    # -- config ---------------------------------------------------------------------------------------
    def write_config(self, config: dict, **extra) -> None:
        meta = {"torch": torch.__version__, "python": platform.python_version(), "git_commit": git_commit(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        atomic_write_text(self.file(CONFIG), json.dumps({"config": config, "meta": meta}, indent=1) + "\n")

    def read_config(self) -> dict:
        try:
            with open(self.file(CONFIG), encoding="utf-8") as f:
                return json.load(f)["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{self.file(CONFIG)} is not a valid run config: {e}") from None

    # -- metrics --------------------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        with open(self.file(METRICS), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        w = self.tensorboard()
        if w is not None:
            step = record["epoch"]
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                    w.add_scalar(k, v, step)
            w.flush()

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep only records of epochs ``<= last_epoch`` (a run killed after logging but before checkpointing
        an epoch redoes that epoch on resume)."""
        path = self.file(METRICS)
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            lines = [ln for ln in f if ln.strip()]
        keep = []
        for ln in lines:
            try:
                if json.loads(ln).get("epoch", 0) <= last_epoch:
                    keep.append(ln)
            except ValueError:
                break  # a half-written last line
        atomic_write_text(path, "".join(keep))

    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(ln) for ln in f if ln.strip()]

    # -- TensorBoard ----------------------------------------------------------------------------------
    def tensorboard(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a broken install should not stop a run
                log.warning("tensorboard is not importable; metrics go to %s only", METRICS)
                self._writer = False
                return None
            self._writer = SummaryWriter(log_dir=self.file("tb"))
        return self._writer or None

    def add_heatmap(self, tag: str, matrix: torch.Tensor, step: int) -> None:
        w = self.tensorboard()
        if w is not None:
            w.add_image(tag, heatmap_image(matrix), step)

    def close(self) -> None:
        if self._writer:
            self._writer.close()

    # -- logging --------------------------------------------------------------------------------------
    def attach_log_file(self) -> logging.Handler:
        handler = logging.FileHandler(self.file("log.txt"), encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)
        return handler


def heatmap_image(matrix: torch.Tensor, cell: int = 12) -> torch.Tensor:
    """A (3, rows*cell, cols*cell) image of ``matrix`` (e.g. softmax(α): edges x ops), dark blue (min) to
    yellow (max), for TensorBoard's image tab."""
    m = matrix.detach().float().cpu()
    m = (m - m.min()) / (m.max() - m.min() + 1e-12)
    stops = torch.tensor([[0.27, 0.00, 0.33], [0.13, 0.57, 0.55], [0.99, 0.91, 0.14]])  # viridis-like
    pos = m * (len(stops) - 1)
    lo = pos.floor().clamp(max=len(stops) - 2).long()
    frac = (pos - lo).unsqueeze(-1)
    rgb = stops[lo] * (1 - frac) + stops[lo + 1] * frac  # (rows, cols, 3)
    return rgb.permute(2, 0, 1).repeat_interleave(cell, 1).repeat_interleave(cell, 2)
