"""What the epoch loops share: the device, moving batches to it, evaluation, and one training epoch of a
discrete network."""
from __future__ import annotations

import torch
import torch.nn as nn

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


def to_device(batch, device, channels_last: bool = False):
    x, y = (t.to(device, non_blocking=True) for t in batch)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, criterion=None) -> tuple[float, float]:
    """Mean loss and top-1 accuracy of ``model`` (eval mode) on ``loader``. Models returning ``(logits, aux)``
    are handled."""
    criterion = criterion or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    tot_loss, correct, count = 0.0, 0, 0
    for batch in loader:
        x, y = to_device(batch, device)
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
            x, y = to_device(batch, device, channels_last)
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
            norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip else float("inf"))
            if not torch.isfinite(norm):
                raise NonFiniteLossError(f"{desc}, step {step + 1}: gradient norm is {float(norm)}")
            optimizer.step()
            tot_loss += value * y.numel()
            correct += int((logits.argmax(1) == y).sum())
            count += y.numel()
            bar.update(loss=tot_loss / count, acc=correct / count)
    return {"train_loss": tot_loss / count, "train_acc": correct / count}
