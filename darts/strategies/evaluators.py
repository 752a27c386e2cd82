"""How a multi-trial strategy's cells are scored (``--evaluator``): a benchmark table, a zero-cost proxy at
initialisation, or real training for a few epochs. Scores are "higher is better"; an evaluator also returns what
it wants logged beside the score.

Add your own: subclass :class:`Evaluator`, decorate it with :func:`register_evaluator`, load it with ``--plugin``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn as nn

from ..data import make_loader, search_split
from ..engine import evaluate, train_epoch
from ..errors import ConfigError
from ..proxies import PROXIES, score as proxy_score
from ..registry import Registry

EVALUATORS = Registry("evaluator", flag="--evaluator",
                      hint="Add your own: subclass darts.strategies.Evaluator, decorate it with @register_evaluator "
                           "and load it with --plugin FILE.")


@dataclass
class EvalContext:
    """What an evaluator may use: the search's ``space`` and general config ``cfg``, the settings of the discrete
    network (``network_cfg``, a :class:`darts.config.RetrainConfig` with the space's protocol for the data set), the
    data (``data()`` loads it on first use) and the ``device``."""

    space: object
    cfg: object
    network_cfg: object
    data: Callable
    device: torch.device


class Evaluator:
    """Scores discrete cells. Subclasses set ``name`` and ``describe`` and implement :meth:`score`."""

    name: ClassVar[str] = ""

    def __init__(self, ctx: EvalContext):
        self.ctx = ctx
        self.check()

    def check(self) -> None:
        """Raise :class:`ConfigError` before the run starts if this evaluator cannot run the search."""

    def score(self, genotype, index: int) -> tuple[float, dict]:
        """``(score, extra metrics)`` of ``genotype``, the ``index``-th evaluation of the run (seed what is random
        from the run's seed and ``index``, so a resumed run scores as an uninterrupted one)."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def network(self, genotype, index: int) -> nn.Module:
        """The discrete network of ``genotype`` at initialisation, seeded by the run's seed and ``index``."""
        data, c = self.ctx.data(), self.ctx.network_cfg
        torch.manual_seed(self.ctx.cfg.seed * 1_000_003 + index)
        return self.ctx.space.build_network(genotype, c, data.num_classes, data.in_channels,
                                            data.image_size).to(self.ctx.device)


def register_evaluator(cls):
    """Class decorator: make ``cls`` (an :class:`Evaluator` subclass) available as ``--evaluator cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Evaluator)) or not cls.name:
        raise ConfigError(f"@register_evaluator takes an Evaluator subclass with a name, got {cls!r}")
    EVALUATORS.register(cls.name, cls, origin=cls.__module__)
    return cls


@register_evaluator
class TableEvaluator(Evaluator):
    """The cell's validation accuracy in the space's benchmark table (NAS-Bench-201: ``--nb201-table``, on
    ``--nb201-dataset``), as the NAS-Bench-201 paper's strategies read it; ``-inf`` for a cell the table lacks."""

    name = "table"

    def check(self):
        self.ctx.space.table_score(None)  # raises if the space has no table

    def score(self, genotype, index):
        value = self.ctx.space.table_score(genotype)
        return (float("-inf"), {}) if value is None else (value, {})

    def describe(self):
        return f"table ({self.ctx.space.table_description()})"


@register_evaluator
class ProxyEvaluator(Evaluator):
    """A zero-cost proxy (``--proxy``) of the cell's network at initialisation: no training. The data-dependent
    proxies read one batch of the weights' split (``--batch-size`` samples, the same batch for every cell)."""

    name = "proxy"

    def check(self):
        PROXIES.get(self.ctx.cfg.proxy)
        self._batch = None

    def batch(self):
        if self._batch is None:
            data = self.ctx.data()
            train_idx, _ = search_split(len(data.train), self.ctx.cfg.train_portion)
            loader = make_loader(data.train, train_idx, self.ctx.cfg.batch_size, self.ctx.cfg.seed, 0)
            loader.sampler.set_pass(0)
            x, y = next(iter(loader))
            self._batch = (x.to(self.ctx.device), y.to(self.ctx.device))
        return self._batch

    def score(self, genotype, index):
        value = proxy_score(self.network(genotype, index), self.ctx.cfg.proxy, self.batch(), copy=False)
        return (value if math.isfinite(value) else float("-inf")), {}

    def describe(self):
        return f"proxy {self.ctx.cfg.proxy} ({PROXIES.get(self.ctx.cfg.proxy).paper.split(',')[0]})"


@register_evaluator
class TrainEvaluator(Evaluator):
    """The cell's network trained from scratch for ``--eval-epochs`` epochs on the weights' split with the space's
    retraining protocol (optimiser, learning rate, cosine schedule over those epochs), scored by its accuracy (%) on
    the α split, as the validation accuracy of a short schedule (NAS-Bench-201's 12-epoch columns)."""

    name = "train"

    def score(self, genotype, index):
        data, c, cfg, device = self.ctx.data(), self.ctx.network_cfg, self.ctx.cfg, self.ctx.device
        model = self.network(genotype, index)
        train_idx, val_idx = search_split(len(data.train), cfg.train_portion)
        seed = cfg.seed * 1_000_003 + index
        train_loader = make_loader(data.train, train_idx, cfg.batch_size, seed, 0)
        val_loader = make_loader(data.train, val_idx, cfg.batch_size, 0, 0, shuffle=False)
        opt = torch.optim.SGD(model.parameters(), c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                              nesterov=c.nesterov)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.eval_epochs)
        criterion = nn.CrossEntropyLoss()
        stats = {}
        for epoch in range(cfg.eval_epochs):
            train_loader.sampler.set_pass(epoch)
            stats = train_epoch(model, train_loader, opt, criterion, device, 0.0, c.grad_clip,
                                f"cell {index + 1}, epoch {epoch + 1}/{cfg.eval_epochs}", False)
            sched.step()
        loss, acc = evaluate(model, val_loader, device)
        return 100.0 * acc, {"eval_train_loss": stats.get("train_loss"), "eval_val_loss": loss}

    def describe(self):
        return f"train ({self.ctx.cfg.eval_epochs} epochs each)"
