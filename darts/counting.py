"""Model cost counters: parameters (as the papers count them) and multiply-adds of Conv2d and Linear layers."""
from __future__ import annotations

import torch
import torch.nn as nn

from .final import count_parameters

__all__ = ["count_parameters", "count_macs"]


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    # Every output element is a dot product over (in_channels / groups) * kH * kW inputs.
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    # output (..., out_features): each element is a dot product of length in_features.
    return output.numel() * module.in_features


def count_macs(model: nn.Module, input_size=(3, 32, 32), *, device=None, dtype=torch.float32) -> int:
    """Multiply-adds of one forward pass at batch 1, counting ``nn.Conv2d`` and ``nn.Linear`` layers only.

    Args:
        model: any module whose ``forward`` takes one ``(1, *input_size)`` tensor; evaluation networks return
            ``(logits, logits_aux)``, which is fine, the output is ignored.
        input_size: ``(C, H, W)`` of one sample (a leading batch dimension of 1 is accepted too).
        device, dtype: where and in which dtype to run the probe (default: where the model's parameters are).

    What is counted: for a conv, ``output elements * (in_channels / groups) * kH * kW`` (so depthwise and
    dilated convs are counted at their real cost, and bias adds are not counted); for a linear layer,
    ``in_features * out_features`` per sample. Not counted: BatchNorm, ReLU, pooling (including global average
    pooling), the node sums and concatenations of a cell, drop path, and the auxiliary head (the probe runs in
    eval mode, where our networks skip it). Layers that run but do not contribute to the output (e.g. an op
    multiplied by zero) are still counted, since they are executed.

    Published multiply-add figures (e.g. 574 M for DARTS on ImageNet) come from other counters, which differ
    in what they include (BN and pooling as operations, element-wise additions, bias terms, or FLOPs = 2 x MACs)
    and in their ImageNet skeleton details, so this number does not reproduce them exactly; compare models with
    the same counter.

    The model's training mode is restored afterwards; the forward runs under ``torch.no_grad``.
    """
    size = tuple(input_size)
    if len(size) == 4:
        if size[0] != 1:
            raise ValueError(f"count_macs counts at batch 1; got input_size {size}")
        size = size[1:]
    if len(size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {tuple(input_size)}")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += _conv_macs(module, output)
        else:
            total += _linear_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *size), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)
