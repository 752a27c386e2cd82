"""DARTS-PT's perturbation-based selection (Wang et al., "Rethinking Architecture Selection in Differentiable NAS",
ICLR 2021): ``--selection pt`` chooses the cell by what each op does to the trained supernet's accuracy, not by α.

As the authors' ``sota/cnn/projection.py`` and ``nasbench201/projection.py`` run it, after the search:

1. **Ops.** Repeatedly, in every cell type, pick an undecided edge at random; remove each candidate op in turn
   (its weight set to 0, the edge's other weights left as they are, not renormalised) and measure the supernet's
   validation accuracy; keep the op whose removal lowers it most, as that edge's only op (weight 1).
2. **Topology** (spaces whose nodes pick two inputs, the DARTS space): for every node with more than two inputs,
   in random order, remove whole input edges one at a time, each time the one whose removal leaves the highest
   accuracy, until two remain.
3. Between two decisions the supernet is fine-tuned for ``--pt-interval`` epochs (5 in the paper): the weights by
   SGD from a tenth of ``--lr``, cosine to ``--lr-min`` over the whole selection, and α by the first-order step.

Accuracies are measured on ``--pt-val-batches`` batches of the validation split (default: all of it, as the
authors' ``infer``), with BatchNorm on each batch's statistics (their supernet is in training mode).
"""
from __future__ import annotations

import logging
import random

import torch
import torch.nn as nn

from .bilevel import BilevelOptimizer
from .methods.single_path import batch_accuracy

log = logging.getLogger(__name__)


class Projection:
    """What DARTS-PT has decided, applied to a supernet's op weights (``model.projection``): decided edges get
    weight 1 on their op and 0 elsewhere, removed edges 0, and the ``probe`` (a candidate removal being measured:
    ``(group, row, op index)``, or ``(group, row, None)`` for the whole edge) 0."""

    def __init__(self, groups):
        self.fixed = {g: {} for g in groups}
        self.dropped = {g: set() for g in groups}
        self.probe = None

    def __call__(self, group: str, w: torch.Tensor) -> torch.Tensor:
        fixed, dropped = self.fixed[group], self.dropped[group]
        probe = self.probe if self.probe is not None and self.probe[0] == group else None
        if not fixed and not dropped and probe is None:
            return w
        keep = torch.ones_like(w)
        add = torch.zeros_like(w)
        for row, k in fixed.items():
            keep[row] = 0
            add[row, k] = 1
        for row in dropped:  # a removed edge is gone, whatever op it had been given
            keep[row] = 0
            add[row] = 0
        out = w * keep + add
        if probe is not None:
            _, row, k = probe
            mask = torch.ones_like(w)
            if k is None:
                mask[row] = 0
            else:
                mask[row, k] = 0
            out = out * mask
        return out


def node_rows(in_degrees) -> list[list[int]]:
    """The α rows of each node's input edges, given every node's in-degree in row order."""
    rows, at = [], 0
    for d in in_degrees:
        rows.append(list(range(at, at + d)))
        at += d
    return rows


def select_by_perturbation(model, space, cfg, bilevel: BilevelOptimizer, train_loader, ctx) -> None:
    """Run DARTS-PT's selection on the trained ``model`` (sets ``model.projection``; its :meth:`genotype` is then
    the selected cell). ``bilevel`` is the search's step, whose α optimizer and training module it reuses."""
    groups = model.alphas.groups
    proj = Projection(groups)
    model.projection = proj
    rng = random.Random(f"{cfg.seed}:pt")
    prims = model.primitives
    val = list(ctx.val_loader)
    if cfg.pt_val_batches:
        val = val[: cfg.pt_val_batches]
    two_inputs = space.node_inputs == 2  # the DARTS rule: each node keeps two inputs
    nodes = node_rows(model.node_in_degrees())
    decisions = model.alphas.group(groups[0]).shape[0] + (sum(len(r) > 2 for r in nodes) if two_inputs else 0)
    steps_per = max(1, round(cfg.pt_interval * len(train_loader))) if cfg.pt_interval else 0
    total = steps_per * max(decisions - 1, 0)
    tuner = _Tuner(model, cfg, bilevel, train_loader, ctx, total) if total else None

    def accuracy(probe) -> float:
        proj.probe = probe
        try:
            return batch_accuracy(model, val, ctx, batch_stats=True)
        finally:
            proj.probe = None

    done = 0
    undecided = {g: list(range(model.alphas.group(g).shape[0])) for g in groups}
    while any(undecided.values()):
        if done and tuner is not None:
            tuner.run(steps_per)
        for g in groups:
            if not undecided[g]:
                continue
            row = undecided[g].pop(rng.randrange(len(undecided[g])))
            ops = [k for k, op in enumerate(prims) if space.may_take(g, row, op)]
            accs = {k: accuracy((g, row, k)) for k in ops}
            best = min(ops, key=lambda k: (accs[k], k))  # its removal hurts most
            proj.fixed[g][row] = best
            log.info("pt: %s edge %d -> %s (accuracy without it %.2f%%; without the others %s)", g, row, prims[best],
                     100 * accs[best], ", ".join(f"{prims[k]} {100 * a:.1f}" for k, a in accs.items() if k != best))
        done += 1
    if two_inputs:
        pending = [i for i, r in enumerate(nodes) if len(r) > 2]
        while pending:
            if tuner is not None:
                tuner.run(steps_per)
            i = pending.pop(rng.randrange(len(pending)))
            for g in groups:
                kept = list(nodes[i])
                while len(kept) > 2:
                    accs = {row: accuracy((g, row, None)) for row in kept}
                    drop = max(kept, key=lambda r: (accs[r], -r))  # the edge it misses least
                    kept.remove(drop)
                    proj.dropped[g].add(drop)
                log.info("pt: %s node %d keeps inputs %s", g, i + 2, [r - nodes[i][0] for r in kept])


class _Tuner:
    """The fine-tuning between decisions: weights by SGD from lr/10, cosine over all ``total`` steps, and α by the
    first-order step, on the search's training and validation data."""

    def __init__(self, model, cfg, bilevel, train_loader, ctx, total: int):
        self.model, self.loader, self.ctx = model, train_loader, ctx
        self.w_opt = torch.optim.SGD(model.weight_parameters(), cfg.lr / 10, momentum=cfg.momentum,
                                     weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, max(total, 1), eta_min=cfg.lr_min)
        self.step = BilevelOptimizer(model, nn.CrossEntropyLoss(), self.w_opt, bilevel.a_optimizer, "first",
                                     grad_clip=cfg.grad_clip, reduce=bilevel.reduce,
                                     train_module=bilevel.train_module, amp_dtype=bilevel.amp_dtype)
        self.arch = model.method.uses_alpha
        self.passes, self.batches = cfg.epochs, iter(())

    def run(self, steps: int) -> None:
        self.model.train()
        for _ in range(steps):
            batch = next(self.batches, None)
            if batch is None:
                self.loader.sampler.set_pass(self.passes)
                self.passes += 1
                self.batches = iter(self.loader)
                batch = next(self.batches)
            train = self.ctx.to_device(batch)
            lr = self.sched.get_last_lr()[0]
            if self.arch:
                self.step.arch_step(train, self.ctx.to_device(next(self.ctx.val_stream)), lr)
            self.step.weight_step(train)
            self.sched.step()
