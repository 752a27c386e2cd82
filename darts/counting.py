"""Model cost counters: parameters (as the papers count them), multiply-adds of Conv2d and Linear layers, and the
FLOPs NAS-Bench-Suite-Zero's tables report for NAS-Bench-201 cells."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .final import count_parameters

__all__ = ["count_parameters", "count_macs", "count_flops"]


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


def _leaf_flops(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """tensorwatch 0.9.1's rule for one leaf module (``torchstat/compute_flops.py``)."""
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        f = kh * kw * x.shape[1] * (y.shape[1] // m.groups) * y.shape[0] * y.shape[2] * y.shape[3]
        return f + (y.numel() if m.bias is not None else 0)
    if isinstance(m, nn.BatchNorm2d):
        return x.numel() * (2 if m.affine else 1)
    if isinstance(m, nn.ReLU):
        return x.numel()
    if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
        k, s, p = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
        oh, ow = math.floor((x.shape[2] + 2 * p - k) / s + 1), math.floor((x.shape[3] + 2 * p - k) / s + 1)
        return x.shape[0] * x.shape[1] * oh * ow * k * k
    if isinstance(m, nn.AdaptiveAvgPool2d):
        H, W, total = x.shape[2], x.shape[3], 0
        for a in range(y.shape[2]):  # each output cell averages a window; the counter adds one row and column
            rows = math.ceil((a + 1) * H / y.shape[2]) - math.floor(a * H / y.shape[2]) + 1
            for b in range(y.shape[3]):
                cols = math.ceil((b + 1) * W / y.shape[3]) - math.floor(b * W / y.shape[3]) + 1
                total += x.shape[0] * x.shape[1] * rows * cols
        return total
    if isinstance(m, nn.Linear):
        return x.shape[0] * x.shape[1] * y.shape[1]
    return 0


def count_flops(model: nn.Module, input_size=(3, 32, 32), *, device=None) -> int:
    """FLOPs of one forward pass at batch 1 as NAS-Bench-Suite-Zero counts them (its ``flops`` of NAS-Bench-201
    cells, computed with tensorwatch 0.9.1), so its tables can be compared number for number.

    Counted, per leaf module that runs: Conv2d ``kh·kw·C_in·(C_out/groups)·H_out·W_out`` plus one per output element
    if it has a bias; BatchNorm2d one per input element (two if affine); ReLU one per input element; average and
    max pooling ``C·H_out·W_out·k²``; adaptive average pooling the window of every output cell plus one row and
    one column (tensorwatch's rule); Linear ``in·out`` (the bias not counted). Element-wise additions, identities and
    the zero op count nothing. (The NAS-Bench-201 API's own cost table counts Conv2d and Linear only, so its FLOPs
    are smaller; :func:`count_macs` is that count without the bias terms.)
    """
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    total, seen = 0, set()

    def hook(module, inputs, output):
        nonlocal total
        if id(module) not in seen:  # a module run twice is counted once, as tensorwatch's per-node statistics
            seen.add(id(module))
            total += _leaf_flops(module, inputs[0], output)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *tuple(input_size)), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)
