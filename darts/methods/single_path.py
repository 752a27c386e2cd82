"""What the sampling searches (ENAS, RS-WS, SPOS) share: one discrete cell per step instead of a relaxation.

Each weight step trains the supernet's shared weights on one sampled cell (a *path*): every edge of the cell
computes only its chosen op (:class:`PathEdge`), every other edge nothing. The cells come from the space's
:class:`darts.strategies.CellEncoding`, so one method serves every space that declares one; α is kept (the run
directory's heat maps show the cell in use) but never stepped.

The random numbers of a draw come from ``(seed, what, epoch, draw)`` alone, so every rank of a ``torchrun`` search
draws the same cell at every step, and a resumed search draws what the uninterrupted one would.
"""
from __future__ import annotations

import contextlib
import random

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..supernet import MixedOp
from .base import SearchMethod


class PathEdge(MixedOp):
    """An edge that computes only the ops its weight row names: ``Σ_{k: w_k ≠ 0} w_k · op_k(x)``.

    A sampled cell gives each of its edges weight 1 on its op (2 when a node reads one input twice with the same op,
    as ENAS cells may), and an all-zero row to every edge it does not use: that edge costs nothing and returns
    zeros of its output's shape.
    """

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        chosen = [int(k) for k in torch.nonzero(weights.detach()).flatten()]
        if not chosen:
            B, C, H, W = x.shape
            s = self.stride
            return x.new_zeros(B, C, (H + s - 1) // s, (W + s - 1) // s)
        y = None
        for k in chosen:
            out = self.candidates[k](x)
            w = float(weights[k])
            out = out if w == 1.0 else w * out
            y = out if y is None else y + out
        return y


class SinglePathMethod(SearchMethod):
    """The base of methods that train the shared weights on one sampled cell per step.

    A subclass draws cells in :meth:`sample` (uniform here), and chooses the final one in :meth:`final_genotype`.
    ``self.path`` is the cell of the training passes; ``self.shown`` the cell of evaluation passes and of the
    epoch's genotype (what :meth:`showing` sets while a candidate is scored).
    """

    generic_cell = True
    uses_all_weights = False
    softmax_relaxation = False
    uses_alpha = False

    def check_run(self, cfg, space):
        if cfg.order == "second":
            raise ConfigError(f"--method {self.name} samples cells and has no α gradient: --order second does not "
                              "apply")
        if cfg.cost_target is not None:
            raise ConfigError(f"--cost-target penalises a relaxation's expected cost; --method {self.name} samples "
                              "cells (use --strategy with a cost, or a relaxation method)")
        if cfg.max_skip is not None:
            raise ConfigError(f"--max-skip caps the skips α's discretization keeps; --method {self.name} chooses "
                              "whole cells")

    def bind(self, space, primitives, seed):
        self.space, self.primitives, self.seed = space, tuple(primitives), seed
        self.encoding = space.encoding(primitives)
        self.epoch, self.draws = 0, 0
        self.path = self.shown = self.encoding.decode(self.encoding.random(self.rng("init")))
        self._rows: dict = {}

    def rng(self, *tag) -> random.Random:
        """A generator of its own for ``tag``: the same on every rank and after a resume."""
        return random.Random(":".join(str(t) for t in (self.seed, *tag)))

    def build_edge(self, C, stride, primitives, search_bn=True):
        if not hasattr(self, "encoding"):
            raise ConfigError(f"--method {self.name} samples the space's cells: call method.bind(space, primitives, "
                              "seed) before building its supernet (darts.search does)")
        return PathEdge(C, stride, primitives, search_bn=search_bn)

    # -- the cell of each pass ----------------------------------------------------------------------------
    def sample(self, model, rng: random.Random):
        """The cell of the next training step: uniform over the space's cells (RS-WS, SPOS)."""
        return self.encoding.decode(self.encoding.random(rng))

    def resample(self, model):
        self.path = self.sample(model, self.rng("path", self.epoch, self.draws))
        self.draws += 1

    def start_epoch(self, model, epoch, epochs):
        self.epoch, self.draws = epoch, 0
        return {}

    def updates_arch(self, epoch, epochs, warmup):
        return False

    def rows(self, genotype, group: str, like: torch.Tensor) -> torch.Tensor:
        """The weight rows ``(edges, K)`` of ``genotype``'s edges in cell type ``group``, in ``like``'s dtype.

        They stay on the CPU whatever the model's device: an edge reads which ops to run from its row, and a
        CPU row tells it without waiting for the GPU."""
        key = (group, like.dtype)
        cached = self._rows.get(key)
        if cached is not None and cached[0] is genotype:
            return cached[1]
        w = torch.zeros(like.shape, dtype=like.dtype)
        for g, row, op in self.space.genotype_edges(genotype):
            if g == group:
                w[row, self.primitives.index(op)] += 1
        self._rows[key] = (genotype, w)
        return w

    def op_weights(self, alpha, group, training):
        return self.rows(self.path if training else self.shown, group, alpha)

    def derive_weights(self, model, group):
        return self.rows(self.shown, group, model.alphas.group(group))

    def current_genotype(self, model):
        return self.shown

    def after_epoch(self, model, ctx):
        """The epoch's cell's accuracy on the validation split with each batch's own BatchNorm statistics
        (``path_val_acc``): the running statistics mix every path trained, so ``val_acc`` understates any one."""
        with self.showing(self.shown):
            return {"path_val_acc": batch_accuracy(model, ctx.val_loader, ctx, batch_stats=True)}

    @contextlib.contextmanager
    def showing(self, genotype):
        """Every pass runs ``genotype`` inside the block (training passes too, for BatchNorm recalibration)."""
        before = self.path, self.shown
        self.path = self.shown = genotype
        try:
            yield
        finally:
            self.path, self.shown = before


# -- scoring cells on the shared weights -------------------------------------------------------------------


@torch.no_grad()
def batch_accuracy(model, batches, ctx, batch_stats: bool = False) -> float:
    """Top-1 accuracy on ``batches`` over every rank's (``ctx.reduce``), in evaluation mode (running BatchNorm
    statistics), or normalising with each batch's own statistics if ``batch_stats`` (:func:`batch_statistics`)."""
    with batch_statistics(model) if batch_stats else contextlib.nullcontext():
        if not batch_stats:
            model.eval()
        correct = total = 0
        for batch in batches:
            x, y = ctx.to_device(batch)
            correct += int((model(x).argmax(1) == y).sum())
            total += int(y.numel())
    counts = ctx.reduce([torch.tensor([float(correct), float(total)], device=ctx.device)])[0]
    return float(counts[0] / counts[1].clamp(min=1))


def _batchnorms(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def recalibrated_bn(model: nn.Module, batches, ctx):
    """BatchNorm running statistics recomputed on ``batches`` for the cell in use, and restored afterwards.

    As SPOS's ``recalc_bn`` does: the statistics are reset (mean 0, variance 1), then the batches run in training
    mode with the usual momentum (0.1), so the last batches count most; the shared statistics fit no one path."""
    bns = _batchnorms(model)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
        model.train()
        with torch.no_grad():
            for batch in batches:
                model(ctx.to_device(batch)[0])
        model.eval()
        yield
    finally:
        for m, (mean, var, n) in zip(bns, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(n)


@contextlib.contextmanager
def batch_statistics(model: nn.Module):
    """Forward passes normalise with each batch's own statistics (training mode) without moving the running ones:
    how ENAS's reward and DARTS-PT's accuracies are measured on the shared weights."""
    bns = _batchnorms(model)
    momenta = [m.momentum for m in bns]
    was_training = model.training
    try:
        for m in bns:
            m.momentum = 0.0  # running = (1 - 0)·running + 0·batch: unchanged
        model.train()
        yield
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)
