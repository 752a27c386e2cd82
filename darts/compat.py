"""Loading checkpoints of the original DARTS code (quark0/darts ``cnn/model.py``) into our evaluation networks.

Our module names mirror the original, so a state dict maps one to one once the wrappers are removed: a
``module.`` prefix (DataParallel), an outer ``{'state_dict': ...}``, and the ``num_batches_tracked`` buffers that
PyTorch 0.3 did not have.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import torch
import torch.nn as nn

from .errors import CheckpointError

__all__ = ["convert_reference_state_dict", "load_reference_checkpoint"]

# Keys under which training scripts commonly nest the weights.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def _unwrap(sd: Mapping) -> Mapping:
    """Return the mapping of tensors inside ``sd`` (itself, or one of the usual wrapper keys)."""
    for _ in range(3):  # a wrapper inside a wrapper is seen in the wild; more is not a checkpoint
        if sd and all(isinstance(v, torch.Tensor) for v in sd.values()):
            return sd
        inner = next((sd[k] for k in _WRAPPER_KEYS if isinstance(sd.get(k), Mapping)), None)
        if inner is None:
            break
        sd = inner
    if sd and all(isinstance(v, torch.Tensor) for v in sd.values()):
        return sd
    raise CheckpointError(
        "checkpoint does not hold a state dict: expected a mapping of parameter names to tensors, possibly "
        f"under one of the keys {', '.join(_WRAPPER_KEYS)}"
    )


def convert_reference_state_dict(sd: Mapping) -> dict[str, torch.Tensor]:
    """Turn a state dict saved by the original DARTS code into one that loads with ``strict=True``.

    Args:
        sd: the loaded checkpoint: a state dict, or a dict holding one under ``state_dict`` (or
            ``model_state_dict``/``model``/``net``); keys may carry DataParallel's ``module.`` prefix.

    Returns a new ``{name: tensor}`` dict: ``module.`` stripped, and a zero ``num_batches_tracked`` (int64
    scalar) added for every BatchNorm that has running statistics but no counter (PyTorch 0.3 checkpoints).
    The counter only matters for BN with ``momentum=None``; zero means "no batches seen".
    """
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"checkpoint must be a dict, got {type(sd).__name__}")
    sd = _unwrap(sd)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name in out:
            raise CheckpointError(f"checkpoint has {name!r} both with and without the 'module.' prefix")
        out[name] = value
    for key in [k for k in out if k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out


def load_reference_checkpoint(model: nn.Module, path: str) -> nn.Module:
    """Load an original-DARTS checkpoint file into ``model`` (NetworkCIFAR/NetworkImageNet of the same genotype
    and size) with ``strict=True``; returns ``model``.

    The file is read with ``torch.load(weights_only=True)`` on the CPU: tensors and plain containers only, never
    arbitrary pickled objects. A checkpoint that pickled a whole model object is refused; re-save its
    ``state_dict()`` with the original code. Every failure raises :class:`CheckpointError` naming the file.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise CheckpointError(
                f"{path}: refused by the safe loader (weights_only=True): it pickles objects other than tensors, "
                "e.g. a whole model; save model.state_dict() with the code that wrote it and load that instead"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from None
    except Exception as e:  # a truncated or foreign file fails deep in the unpickler with any exception type
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    try:
        converted = convert_reference_state_dict(sd)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    _check_matches(model, converted, path)
    model.load_state_dict(converted, strict=True)
    return model


def _check_matches(model: nn.Module, sd: Mapping, path: str) -> None:
    """Raise a readable :class:`CheckpointError` where ``load_state_dict`` would raise a long RuntimeError."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in sd and sd[k].shape != v.shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch (file vs model)", wrong)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    if problems:
        raise CheckpointError(
            f"{path} does not fit this network ({'; '.join(problems)}). Build the model with the genotype, "
            "channels, layers, classes and auxiliary setting the checkpoint was trained with."
        )
