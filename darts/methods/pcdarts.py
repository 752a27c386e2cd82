"""PC-DARTS (Xu et al., "PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search",
ICLR 2020): only 1/K of an edge's channels go through the mixed op, and each edge's output is scaled by a
normalised edge weight β.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..options import option
from ..supernet import MixedOp
from .base import SearchMethod, channel_shuffle
from .registry import register_method


class PartialMixedOp(nn.Module):
    """One PC-DARTS edge (Sec. 3.2, Eq. 3): ``shuffle([Σ_k w_k op_k(x_a), x_b], K)``.

    ``x_a`` is the first C/K channels, ``x_b`` the other (K-1)C/K, which bypass the ops (max-pooled with stride 2
    on reduction edges, so the shapes match); the channel shuffle lets a different 1/K be sampled at the next
    edge. The mixed op inside is an ordinary :class:`MixedOp` of C/K channels, so every ``--kernels`` path applies.
    """

    def __init__(self, C: int, stride: int, primitives, k: int, search_bn: bool = True):
        super().__init__()
        if C % k:
            raise ValueError(f"PC-DARTS needs the channels ({C}) divisible by K={k}")
        self.k = k
        self.stride = stride
        self.mixed = MixedOp(C // k, stride, primitives, search_bn=search_bn)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        c = x.shape[1] // self.k
        x_a, x_b = x[:, :c], x[:, c:]
        y = self.mixed(x_a, weights)
        if self.stride == 2:
            x_b = F.max_pool2d(x_b, 2, 2)
        return channel_shuffle(torch.cat([y, x_b], dim=1), self.k)


@register_method
class PCDARTS(SearchMethod):
    """Partial channel connections and edge normalisation.

    Options:
        k: the channel proportion 1/K (K=4 on CIFAR-10 in the paper).
    Edge normalisation (Sec. 3.3): node ``i`` sums ``softmax_j(β_ij) · edge_ij(h_j)`` over its incoming edges; the
    discretizer reads ``softmax(α) · softmax_j(β)`` so the edge choice uses both. Paper defaults (CIFAR-10):
    batch 256, lr 0.1 to 0, α learning rate 6e-4, α frozen for the first 15 of 50 epochs.
    """

    name = "pcdarts"
    paper = "Xu et al., PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search, ICLR 2020"
    flag_prefix = "pc"

    @dataclass
    class Options:
        k: int = option(4, "1/K of the channels go through the mixed op", positive=True, max=1024)
    presets = {"paper": dict(batch_size=256, lr=0.1, lr_min=0.0, arch_lr=6e-4, arch_weight_decay=1e-3, arch_warmup=15),
               "small": dict(lr=0.1, lr_min=0.0, arch_lr=6e-4, arch_weight_decay=1e-3, arch_warmup=2)}
    generic_cell = True

    def setup(self):
        self.k = self.options.k

    def check_run(self, cfg, space):
        check_divisible(space.cell_channels(cfg.init_channels), self.k, "--method pcdarts", "--pc-k")

    def build_edge(self, C, stride, primitives, search_bn=True):
        return PartialMixedOp(C, stride, primitives, self.k, search_bn)

    def extra_arch_shapes(self, groups):
        return {f"beta_{g}": (edges,) for g, edges in groups.items()}

    def edge_coefficients(self, model, group):
        beta = getattr(model.alphas, f"beta_{group}")
        # softmax over the edges entering each node (the space says how many: 2 + i in a DARTS cell)
        out, start = [], 0
        for n in model.node_in_degrees():
            out.append(F.softmax(beta[start : start + n], dim=-1))
            start += n
        return torch.cat(out)

    def derive_weights(self, model, group):
        w = F.softmax(model.alphas.group(group), dim=-1)
        return w * self.edge_coefficients(model, group).unsqueeze(1)

    def describe(self):
        return f"pcdarts (K={self.k})"


def check_divisible(channels: list[int], k: int, who: str, flag: str) -> None:
    """:class:`ConfigError` unless every cell's channel count is a multiple of the partial-channel K."""
    if any(c % k for c in channels):
        raise ConfigError(f"{who} needs every cell's channels ({', '.join(map(str, channels))}) divisible by {flag} {k}")
