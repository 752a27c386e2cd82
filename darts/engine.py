"""Epoch loops: one search epoch (bilevel steps), one training epoch of an evaluation network, evaluation."""
from __future__ import annotations

import torch
import torch.nn as nn

from .bilevel import BilevelOptimizer
from .errors import ConfigError, NonFiniteLossError
from .progress import Progress


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device {name!r} is not a device name ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def _to(batch, device, channels_last: bool = False):
    x, y = (t.to(device, non_blocking=True) for t in batch)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def search_epoch(bilevel: BilevelOptimizer, train_loader, val_stream, xi: float, device, desc: str,
                 progress: bool = True, channels_last: bool = False, update_arch: bool = True) -> dict:
    """One pass over the training split; each step takes the next batch of the persistent validation stream.

    ``update_arch=False``: weight steps only (α warm-up); the validation stream still advances, so a run's
    batches do not depend on its warm-up length. Returns mean training loss/accuracy and the mean validation
    loss seen by the α steps (None when there were none)."""
    bilevel.model.train()
    tot_loss = tot_val = 0.0
    correct = count = steps = 0
    with Progress(len(train_loader), desc, enabled=progress) as bar:
        for step, batch in enumerate(train_loader):
            try:
                s = bilevel.step(_to(batch, device, channels_last), _to(next(val_stream), device, channels_last), xi,
                                 update_arch=update_arch)
            except NonFiniteLossError as e:
                raise NonFiniteLossError(f"{desc}, step {step + 1}: {e}") from None
            tot_loss += s.train_loss * s.train_count
            if update_arch:
                tot_val += s.val_loss
            correct += s.train_correct
            count += s.train_count
            steps += 1
            bar.update(loss=tot_loss / count, acc=correct / count)
    return {"train_loss": tot_loss / count, "train_acc": correct / count,
            "arch_val_loss": tot_val / steps if update_arch else None}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, criterion=None) -> tuple[float, float]:
    """Mean loss and top-1 accuracy of ``model`` (eval mode) on ``loader``. Models returning ``(logits, aux)``
    are handled."""
    criterion = criterion or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    tot_loss, correct, count = 0.0, 0, 0
    for batch in loader:
        x, y = _to(batch, device)
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        tot_loss += float(criterion(logits, y)) * y.numel()
        correct += int((logits.argmax(1) == y).sum())
        count += y.numel()
    model.train(was_training)
    return tot_loss / count, correct / count


def train_epoch(model: nn.Module, loader, optimizer, criterion, device, aux_weight: float, grad_clip: float,
                desc: str, progress: bool = True, amp: bool = False, channels_last: bool = False) -> dict:
    """One epoch of an evaluation network: loss + aux_weight · auxiliary loss, clipped SGD; ``amp``: bfloat16
    autocast (no loss scaling is needed for bfloat16)."""
    model.train()
    tot_loss, correct, count = 0.0, 0, 0
    with Progress(len(loader), desc, enabled=progress) as bar:
        for step, batch in enumerate(loader):
            x, y = _to(batch, device, channels_last)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                logits, logits_aux = model(x)
                loss = criterion(logits, y)
                if logits_aux is not None:
                    loss = loss + aux_weight * criterion(logits_aux, y)
            value = float(loss.detach())
            if value != value or abs(value) == float("inf"):
                raise NonFiniteLossError(f"{desc}, step {step + 1}: training loss is {value}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if not torch.isfinite(norm):
                raise NonFiniteLossError(f"{desc}, step {step + 1}: gradient norm is {float(norm)}")
            optimizer.step()
            tot_loss += value * y.numel()
            correct += int((logits.argmax(1) == y).sum())
            count += y.numel()
            bar.update(loss=tot_loss / count, acc=correct / count)
    return {"train_loss": tot_loss / count, "train_acc": correct / count}
