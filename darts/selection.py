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


def plan(model, two_inputs: bool, rng: random.Random) -> list:
    """DARTS-PT's decisions in order: ``("op", {group: row})`` while edges are undecided (a random undecided edge of
    every cell type), then ``("node", i)`` for every node with more than two inputs, in random order."""
    groups = model.alphas.group
    undecided = {g: list(range(groups(g).shape[0])) for g in model.alphas.groups}
    out = []
    while any(undecided.values()):
        out.append(("op", {g: rows.pop(rng.randrange(len(rows))) for g, rows in undecided.items() if rows}))
    if two_inputs:
        pending = [i for i, r in enumerate(node_rows(model.node_in_degrees())) if len(r) > 2]
        while pending:
            out.append(("node", pending.pop(rng.randrange(len(pending)))))
    return out


def select_by_perturbation(model, space, cfg, bilevel: BilevelOptimizer, train_loader, ctx) -> None:
    """Run DARTS-PT's selection on the trained ``model`` (sets ``model.projection``; its :meth:`genotype` is then
    the selected cell). ``bilevel`` is the search's step, whose α optimizer and training module it reuses.

    With ``ctx.save_phase`` the state after every decision (decisions, supernet, optimisers, data position) is
    checkpointed, and a killed selection continues from its last decision, as an uninterrupted one would."""
    groups = model.alphas.groups
    proj = Projection(groups)
    model.projection = proj
    prims = model.primitives
    val = list(ctx.val_loader)
    if cfg.pt_val_batches:
        val = val[: cfg.pt_val_batches]
    nodes = node_rows(model.node_in_degrees())
    decisions = plan(model, space.node_inputs == 2, random.Random(f"{cfg.seed}:pt"))
    steps_per = max(1, round(cfg.pt_interval * len(train_loader))) if cfg.pt_interval else 0
    total = steps_per * max(len(decisions) - 1, 0)
    tuner = _Tuner(model, cfg, bilevel, train_loader, ctx, total) if total else None
    start = 0
    saved = ctx.load_phase("selection") if ctx.load_phase is not None else None
    if saved is not None:
        start = saved["next"]
        for g in groups:
            proj.fixed[g] = {int(r): int(k) for r, k in saved["fixed"][g]}
            proj.dropped[g] = {int(r) for r in saved["dropped"][g]}
        model.load_state_dict(saved["model"])
        bilevel.a_optimizer.load_state_dict(saved["a_opt"])
        ctx.val_stream.load_state_dict(saved["val_stream"])
        if tuner is not None:
            tuner.load_state_dict(saved["tuner"])

    def accuracy(probe) -> float:
        proj.probe = probe
        try:
            return batch_accuracy(model, val, ctx, batch_stats=True)
        finally:
            proj.probe = None

    for n in range(start, len(decisions)):
        if n and tuner is not None:
            tuner.run(steps_per)
        kind, what = decisions[n]
        if kind == "op":
            for g, row in what.items():
                ops = [k for k, op in enumerate(prims) if space.may_take(g, row, op)]
                accs = {k: accuracy((g, row, k)) for k in ops}
                best = min(ops, key=lambda k: (accs[k], k))  # its removal hurts most
                proj.fixed[g][row] = best
                log.info("pt %d/%d: %s edge %d -> %s (accuracy without it %.2f%%; without the others %s)", n + 1,
                         len(decisions), g, row, prims[best], 100 * accs[best],
                         ", ".join(f"{prims[k]} {100 * a:.1f}" for k, a in accs.items() if k != best))
        else:
            for g in groups:
                kept = list(nodes[what])
                while len(kept) > 2:
                    accs = {row: accuracy((g, row, None)) for row in kept}
                    drop = max(kept, key=lambda r: (accs[r], -r))  # the edge it misses least
                    kept.remove(drop)
                    proj.dropped[g].add(drop)
                log.info("pt %d/%d: %s node %d keeps inputs %s", n + 1, len(decisions), g, what + 2,
                         [r - nodes[what][0] for r in kept])
        if ctx.save_phase is not None and n + 1 < len(decisions):
            ctx.save_phase("selection", {
                "next": n + 1, "model": model.state_dict(), "a_opt": bilevel.a_optimizer.state_dict(),
                "val_stream": ctx.val_stream.state_dict(),
                "fixed": {g: sorted(proj.fixed[g].items()) for g in groups},
                "dropped": {g: sorted(proj.dropped[g]) for g in groups},
                "tuner": tuner.state_dict() if tuner is not None else {}})


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
        self.first_pass = cfg.epochs  # the passes over the training split go on from the search's
        self.passes, self.taken, self.batches = self.first_pass, 0, None

    def _next_batch(self):
        while True:
            if self.batches is None:
                self.loader.sampler.set_pass(self.passes)
                self.batches = iter(self.loader)
                for _ in range(self.taken):  # resuming inside a pass
                    next(self.batches)
            batch = next(self.batches, None)
            if batch is not None:
                self.taken += 1
                return batch
            self.passes, self.taken, self.batches = self.passes + 1, 0, None

    def run(self, steps: int) -> None:
        self.model.train()
        for _ in range(steps):
            train = self.ctx.to_device(self._next_batch())
            lr = self.sched.get_last_lr()[0]
            if self.arch:
                self.step.arch_step(train, self.ctx.to_device(next(self.ctx.val_stream)), lr)
            self.step.weight_step(train)
            self.sched.step()

    def state_dict(self) -> dict:
        return {"w_opt": self.w_opt.state_dict(), "sched": self.sched.state_dict(), "passes": self.passes,
                "taken": self.taken}

    def load_state_dict(self, state: dict) -> None:
        self.w_opt.load_state_dict(state["w_opt"])
        self.sched.load_state_dict(state["sched"])
        self.passes, self.taken, self.batches = int(state["passes"]), int(state["taken"]), None
