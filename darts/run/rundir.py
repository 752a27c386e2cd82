"""A run directory: config.json, metrics.jsonl, log.txt, TensorBoard events and the checkpoint, in one place.

Nothing the program did not write in this run is deleted or overwritten: a directory that holds a run needs
``--resume``; a damaged ``metrics.jsonl`` is moved aside intact, never trimmed; a failed write (a full or
read-only disk) leaves the files as they were and stops the run with a message that says so.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import platform
import subprocess
import time

import torch

from ..errors import ConfigError, DartsError
from .checkpoint import atomic_write_text

log = logging.getLogger(__name__)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"


class RunDirError(DartsError):
    """The file system refused a run directory's file (a full or read-only disk, a path under a regular file...)."""


def _why(e: OSError) -> str:
    hint = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
            errno.EACCES: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a directory",
            errno.EDQUOT: "the disk quota is exceeded"}.get(e.errno)
    return hint or (e.strerror or str(e))


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (suffixed ``-dirty`` if modified), if it is one."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
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
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create the run directory {path!r}: {_why(e)}") from None
        return cls(path)

    @staticmethod
    def check_new(path: str) -> None:
        """Raise :class:`ConfigError` unless ``path`` can hold a new run (absent, or holding no run)."""
        if not isinstance(path, str) or not path.strip():
            raise ConfigError(f"--out must name a directory, got {path!r}")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"--out {path!r} exists and is not a directory")
        parent = os.path.dirname(os.path.abspath(path))
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and not os.path.isdir(parent):
            raise ConfigError(f"--out {path!r}: {parent!r} is a file, so no directory can be made under it")
        if os.path.isdir(path) and (os.path.exists(os.path.join(path, CONFIG)) or
                                    os.path.exists(os.path.join(path, CHECKPOINT))):
            raise ConfigError(f"{path!r} already holds a run; continue it with --resume {path}, or choose another "
                              "--out (nothing was overwritten)")
        tb = os.path.join(path, "tb")
        if os.path.exists(tb) and not os.path.isdir(tb):
            raise ConfigError(f"{tb!r} is a file; a run keeps its TensorBoard events in a directory of that name")

    @classmethod
    def open_existing(cls, path: str) -> "RunDir":
        if not isinstance(path, str) or not os.path.isdir(path):
            raise ConfigError(f"--resume {path!r}: no such run directory")
        if not os.path.exists(os.path.join(path, CONFIG)):
            raise ConfigError(f"--resume {path!r}: no {CONFIG} there, so it is not a run directory")
        tb = os.path.join(path, "tb")
        if os.path.exists(tb) and not os.path.isdir(tb):
            raise ConfigError(f"{tb!r} is a file; a run keeps its TensorBoard events in a directory of that name")
        return cls(path)

    # -- config ---------------------------------------------------------------------------------------
    def write_config(self, config: dict, **extra) -> None:
        meta = {"torch": torch.__version__, "python": platform.python_version(), "git_commit": git_commit(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        try:
            atomic_write_text(self.file(CONFIG), json.dumps({"config": config, "meta": meta}, indent=1) + "\n")
        except OSError as e:
            raise RunDirError(f"cannot write {self.file(CONFIG)}: {_why(e)}") from None

    def read_config(self) -> dict:
        """The saved options (``config.json``'s ``config``); :class:`ConfigError` if the file is not a run config."""
        path = self.file(CONFIG)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        except (ValueError, RecursionError) as e:
            raise ConfigError(f"{path} is not valid JSON: {str(e).splitlines()[0][:200]}") from None
        if not isinstance(d, dict) or not isinstance(d.get("config"), dict):
            raise ConfigError(f"{path} is not a run config: it needs a \"config\" object")
        return d["config"]

    # -- metrics --------------------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        """Append one record as a line of ``metrics.jsonl`` (and its numbers to TensorBoard). A failed write
        (a full disk) truncates the file back to its previous size, so it never holds half a line."""
        path = self.file(METRICS)
        line = (json.dumps(record) + "\n").encode("utf-8")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot write {path}: {_why(e)}") from None
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise RunDirError(f"cannot append epoch {record.get('epoch')} to {path}: {_why(e)}; the file and the "
                              "last checkpoint are as they were: free the disk and continue with --resume "
                              f"{self.path}") from None
        finally:
            os.close(fd)
        w = self.tensorboard()
        if w is not None:
            step = record["epoch"]
            try:
                for k, v in record.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                        w.add_scalar(k, v, step)
                w.flush()
            except OSError as e:  # TensorBoard is a copy of metrics.jsonl: losing it must not stop the run
                log.warning("TensorBoard events not written (%s); metrics.jsonl has them", _why(e))

    def _lines(self) -> tuple[list[str], list[int]]:
        """The lines of ``metrics.jsonl`` and the 1-based numbers of those that are not a JSON record."""
        path = self.file(METRICS)
        with open(path, "rb") as f:
            raw = f.read()
        lines = raw.decode("utf-8", errors="replace").splitlines(keepends=True)
        damaged = []
        for i, ln in enumerate(lines, start=1):
            if not ln.strip():
                continue
            try:
                rec = json.loads(ln)
                if not isinstance(rec, dict) or isinstance(rec.get("epoch"), bool) or \
                        not isinstance(rec.get("epoch"), int):
                    damaged.append(i)
            except ValueError:
                damaged.append(i)
        return lines, damaged

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep the records of epochs ``<= last_epoch`` (a run killed after logging an epoch but before its
        checkpoint redoes it on resume). If a line is damaged, the whole file is first moved aside intact
        (``metrics.jsonl.damaged-TIMESTAMP``, logged) and the intact records are kept."""
        path = self.file(METRICS)
        if not os.path.exists(path):
            return
        lines, damaged = self._lines()
        keep = []
        for i, ln in enumerate(lines, start=1):
            if ln.strip() and i not in damaged and json.loads(ln)["epoch"] <= last_epoch:
                keep.append(ln if ln.endswith("\n") else ln + "\n")
        if not damaged and len(keep) == sum(1 for ln in lines if ln.strip()):
            return  # nothing to change
        try:
            if damaged:
                aside = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
                os.replace(path, aside)
                log.warning("%s had %d damaged line(s) (line %s); the whole file was moved, unchanged, to %s, and "
                            "its %d intact record(s) of the completed epochs are kept in %s", path, len(damaged),
                            ", ".join(map(str, damaged[:5])), aside, len(keep), METRICS)
            atomic_write_text(path, "".join(keep))
        except OSError as e:
            raise RunDirError(f"cannot rewrite {path}: {_why(e)}; nothing was changed") from None

    def read_metrics(self) -> list[dict]:
        """The intact records of ``metrics.jsonl`` (damaged lines are skipped)."""
        path = self.file(METRICS)
        if not os.path.exists(path):
            return []
        lines, damaged = self._lines()
        return [json.loads(ln) for i, ln in enumerate(lines, start=1) if ln.strip() and i not in damaged]

    # -- TensorBoard ----------------------------------------------------------------------------------
    def tensorboard(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a broken install should not stop a run
                log.warning("tensorboard is not importable; metrics go to %s only", METRICS)
                self._writer = False
                return None
            try:
                self._writer = SummaryWriter(log_dir=self.file("tb"))
            except OSError as e:
                log.warning("TensorBoard unavailable (%s: %s); metrics go to %s only", self.file("tb"), _why(e),
                            METRICS)
                self._writer = False
        return self._writer or None

    def add_heatmap(self, tag: str, matrix: torch.Tensor, step: int) -> None:
        w = self.tensorboard()
        if w is not None:
            try:
                w.add_image(tag, heatmap_image(matrix), step)
            except OSError:
                pass

    def close(self) -> None:
        if self._writer:
            try:
                self._writer.close()
            except OSError:
                pass

    # -- logging --------------------------------------------------------------------------------------
    def attach_log_file(self) -> logging.Handler | None:
        try:
            handler = logging.FileHandler(self.file("log.txt"), encoding="utf-8")
        except OSError as e:
            raise RunDirError(f"cannot write {self.file('log.txt')}: {_why(e)}") from None
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
