"""DrNAS (Chen et al., "DrNAS: Dirichlet Neural Architecture Search", ICLR 2021): op weights sampled from a
Dirichlet distribution whose concentration is learned, with pathwise (reparameterised) gradients, on partial channels
with the ops pruned half-way (the authors' progressive scheme).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from ..ops import DARTS_PRIMITIVES
from ..options import option
from ..supernet import MixedOp
from .base import SearchMethod
from .pcdarts import PartialMixedOp, check_divisible
from .registry import register_method

#: the authors' DARTS-space ops: the DARTS primitives without ``none`` (DrNAS ``DARTS-space/genotypes.py``)
DRNAS_PRIMITIVES = tuple(p for p in DARTS_PRIMITIVES if p != "none")


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """``β = ELU(α) + 1 > 0``: the Dirichlet concentration of DrNAS's code, which stays positive and is ~1 at α≈0."""
    return F.elu(alpha) + 1.0


def prune_ops(alpha: torch.Tensor, mask: torch.Tensor, keep: int) -> None:
    """Keep the ``keep`` largest α of every edge among those still in ``mask``, in place (DrNAS ``utils.prune``).

    The kept α keep their values, the others become 0 and leave the mask for good."""
    scores = alpha.detach().masked_fill(~mask, float("-inf"))
    index = scores.topk(keep, dim=-1).indices
    new_mask = torch.zeros_like(mask).scatter_(-1, index, True)
    with torch.no_grad():
        alpha.mul_(new_mask)
    mask.copy_(new_mask)


@register_method
class DrNAS(SearchMethod):
    """Training forward: ``w ~ Dir(β)`` per edge by ``rsample`` (Sec. 3.1), a fresh sample at every forward pass (the
    authors' code draws in ``Network.forward``); evaluation uses the mean ``β / Σβ``. The discretizer ranks ops and
    edges by ``softmax(α)``, as the authors' ``genotype()`` does.

    The progressive scheme (Sec. 3.3, ``DARTS-space/train_search.py``): two stages of half the epochs each, the
    mixed op on ``1/K`` of the channels (PC-DARTS's partial connection, without its edge normalisation), and at the
    start of the second stage every edge keeps its ``keep_ops`` largest α (the others are masked out of the weights,
    which are renormalised). ``--arch-warmup`` applies to each stage. The authors also widen the partial channels
    from ``C/6`` to ``C/4`` at the stage boundary; here ``K`` stays fixed (4, their second stage's) because widening
    changes the weights' shapes mid-run, which the optimizer, DistributedDataParallel and the checkpoint would
    have to follow, and the authors fill the new channels with random copies, so no result depends on its details.

    Options:
        reg: ``l2`` (the authors' default): α weight decay of ``reg_scale`` and nothing else; ``kl``: add
            ``reg_scale · KL(Dir(β) || Dir(1))``, the anchor regulariser of Eq. 3, to the α loss, with no α weight
            decay (their ``architect.py``).
        reg_scale: λ of the regulariser (1e-3).
        k: the partial-channel proportion 1/K (1: all channels, the authors' NAS-Bench-201 setting).
        keep_ops: ops every edge keeps in the second stage (4; 0: no pruning, one stage).
    """

    name = "drnas"
    softmax_relaxation = False
    paper = "Chen et al., DrNAS: Dirichlet Neural Architecture Search, ICLR 2021"
    flag_prefix = "drnas"

    @dataclass
    class Options:
        reg: str = option("l2", "regulariser: l2 (α weight decay of --drnas-reg-scale, the authors' default) or kl "
                          "(the KL to the Dir(1) anchor, then no α weight decay)", choices=("l2", "kl"))
        reg_scale: float = option(1e-3, "scale of the regulariser", nonneg=True)
        k: int = option(4, "1/K of the channels go through the mixed op (nb201: 1)", positive=True, max=1024)
        keep_ops: int = option(4, "ops each edge keeps in the second half of the search (0: no pruning, as in nb201)",
                               nonneg=True, max=1024)
    # DARTS-space/train_search.py: lr 0.1 -> 0, α Adam 6e-4, 36 channels and 20 cells (it searches at the
    # evaluation size), two stages of 25 epochs, α frozen for the first 10 epochs of each.
    presets = {
        "paper": dict(lr=0.1, lr_min=0.0, arch_lr=6e-4, arch_warmup=10, epochs=50),
        "small": dict(lr=0.1, lr_min=0.0, arch_lr=6e-4, arch_warmup=1),
        "darts": dict(primitives=DRNAS_PRIMITIVES),
        "darts/paper": dict(init_channels=36, layers=20),
        # 201-space/train_search.py: all channels, no pruning, α trained from the first step, plain momentum
        "nb201": dict(drnas_k=1, drnas_keep_ops=0, lr=0.025, lr_min=0.001, arch_lr=3e-4, arch_warmup=0,
                      weight_decay=3e-4, nesterov=False),
        "nb201/paper": dict(epochs=100),
    }
    uses_op_mask = True

    def setup(self):
        o = self.options
        self.reg, self.reg_scale, self.k, self.keep_ops = o.reg, o.reg_scale, o.k, o.keep_ops
        self.generic_cell = self.k > 1

    def check_run(self, cfg, space):
        check_divisible(space.cell_channels(cfg.init_channels), self.k, "--method drnas", "--drnas-k")

    def presets_for(self, space, paper_scale):
        out = super().presets_for(space, paper_scale)
        out.setdefault("arch_weight_decay", 0.0 if self.reg == "kl" else self.reg_scale)
        return out

    def build_edge(self, C, stride, primitives, search_bn=True):
        if self.k == 1:
            return MixedOp(C, stride, primitives, search_bn=search_bn)
        return PartialMixedOp(C, stride, primitives, self.k, search_bn)

    def stage_start(self, epoch: int, epochs: int) -> int:
        """The first epoch of the stage ``epoch`` is in: 0, or ``epochs // 2`` once the ops are pruned."""
        boundary = epochs // 2
        return boundary if self.keep_ops and boundary and epoch >= boundary else 0

    def updates_arch(self, epoch, epochs, warmup):
        return epoch - self.stage_start(epoch, epochs) >= warmup

    def start_epoch(self, model, epoch, epochs):
        start = self.stage_start(epoch, epochs)
        if start and epoch == start:
            for g in model.alphas.groups:
                mask = model.alphas.mask(g)
                if bool(mask.all()) and self.keep_ops < mask.shape[-1]:  # not yet pruned (a resumed run already is)
                    prune_ops(model.alphas.group(g), mask, self.keep_ops)
        return {"stage": 2 if start else 1}

    def op_weights(self, alpha, group, training):
        beta = concentration(alpha)
        if training:
            return Dirichlet(beta).rsample()
        return beta / beta.sum(-1, keepdim=True)

    def derive_weights(self, model, group):
        return F.softmax(model.alphas.group(group), dim=-1)

    def arch_loss(self, model):
        if self.reg != "kl":
            return None
        total = 0.0
        for g in model.alphas.groups:  # over every α, pruned ones included, as the authors' _get_kl_reg
            beta = concentration(model.alphas.group(g))
            total = total + kl_divergence(Dirichlet(beta), Dirichlet(torch.ones_like(beta))).sum()
        return self.reg_scale * total

    def describe(self):
        prune = f", {self.keep_ops} ops per edge in the second stage" if self.keep_ops else ""
        return f"drnas ({self.reg} regulariser, scale {self.reg_scale}, 1/{self.k} of the channels{prune})"
