"""Atomic writes and safe checkpoint loading.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then renamed over the old
one, so a run killed at any instant leaves either the previous checkpoint or the new one, never half of one.
Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager

import torch

from ..errors import CheckpointError

CHECKPOINT_FORMAT = 1
#: the version of the checkpoint's contents (keys and their meaning); a checkpoint of another layout is refused
LAYOUT = 2


def fingerprint(config: dict) -> str:
    """A digest of a run's resolved options (those that decide what it computes): a checkpoint carries it, and
    resuming refuses one whose run had other options."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename). On failure (disk full, ...) the old
    file is untouched and the temporary file is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(state: dict, path: str) -> None:
    """Serialise ``state`` (tensors, dicts, lists, numbers, strings) and write it atomically."""
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "layout": LAYOUT, **state}, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise CheckpointError(f"could not write checkpoint {path!r}: {e}; the previous checkpoint is intact") from e


def load_checkpoint(path: str, kind: str | None = None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` onto the CPU.

    Raises :class:`CheckpointError` if the file is missing, truncated, holds pickled objects other than tensors
    and containers (refused by ``weights_only``), or is of another ``kind`` (``search`` / ``final``).
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...: the message names the cause in one line
        raise CheckpointError(f"cannot load checkpoint {path!r}: {_first_line(e)}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path!r} is not a checkpoint of this project (format {CHECKPOINT_FORMAT})")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"{path!r} is a {state.get('kind')!r} checkpoint, expected a {kind!r} one")
    return state


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


@contextmanager
def restoring(path: str):
    """Around ``load_state_dict`` calls: a state that does not fit (missing keys, wrong shapes) becomes a
    one-line :class:`CheckpointError` naming ``path`` instead of a long RuntimeError."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} does not fit this run: {_first_line(e)}") from None


def rng_state() -> dict:
    """The torch RNG states (CPU and every CUDA device), for bitwise-identical resumption."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
