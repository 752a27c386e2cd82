"""Random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for Neural Architecture
Search", UAI 2019): train the shared weights on uniformly random cells, then score random cells on them.

Each weight step trains one uniformly random cell of the space. At the end, ``samples`` random cells are scored
on ``batches`` validation batches each, drawn from the advancing validation stream (so each cell sees other
batches, as ``random_weight_share.py``'s shared ``valid_iter``), and the ``top`` best are scored again on the
whole validation split; the best of those is the result. The authors' DARTS-space protocol is 1000 cells on 10
batches and the top 10 on the full split; AutoDL-Projects' NAS-Bench-201 baseline (``RANDOM-NAS.py``,
``search_find_best``) scores 100 cells on one batch each and keeps the best (``top 0``). The scores use the running
BatchNorm statistics (evaluation mode), as ``search_find_best`` does.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..options import option
from .registry import register_method
from .single_path import SinglePathMethod, batch_accuracy

log = logging.getLogger(__name__)


@register_method
class RSWS(SinglePathMethod):
    """Uniform single-path training, then the best of ``samples`` random cells on the shared weights.

    Options:
        samples: random cells scored at the end.
        batches: validation batches each of them is scored on.
        top: that many of the best are scored again on the whole validation split (0: keep the best at once).
    """

    name = "rsws"
    paper = "Li and Talwalkar, Random Search and Reproducibility for Neural Architecture Search, UAI 2019"
    flag_prefix = "rsws"

    @dataclass
    class Options:
        samples: int = option(1000, "random cells scored on the shared weights at the end (nb201: 100)",
                              positive=True, max=10**7)
        batches: int = option(10, "validation batches each cell is scored on (nb201: 1)", positive=True,
                              max=10**6)
        top: int = option(10, "score the best TOP again on the whole validation split (0: no second round; nb201: "
                          "0)", nonneg=True, max=10**6)

    presets = {
        "paper": dict(epochs=100, batch_size=64),  # random_weight_share.py's defaults; DARTS's lr and schedule
        "small": dict(rsws_samples=50, rsws_batches=2, rsws_top=5),
        "nb201": dict(rsws_samples=100, rsws_batches=1, rsws_top=0),
        "nb201/small": dict(rsws_samples=30),
        # AutoDL-Projects' RANDOM.config: 250 epochs, batch 64, lr 0.025 cosine to 0.001
        "nb201/paper": dict(epochs=250, batch_size=64),
    }

    def final_genotype(self, model, ctx):
        o, rng = self.options, self.rng("final")
        scored = []
        for i in range(o.samples):
            cell = self.encoding.decode(self.encoding.random(rng))
            with self.showing(cell):
                scored.append((batch_accuracy(model, [next(ctx.val_stream) for _ in range(o.batches)], ctx), i, cell))
        scored.sort(key=lambda t: (-t[0], t[1]))  # ties: the first drawn
        best = scored[0]
        if o.top:
            finals = []
            for acc, i, cell in scored[: o.top]:
                with self.showing(cell):
                    finals.append((batch_accuracy(model, ctx.val_loader, ctx), i, cell))
            best = min(finals, key=lambda t: (-t[0], t[1]))
        log.info("rsws: best of %d random cells (%s): validation accuracy %.2f%% on the shared weights",
                 o.samples, f"top {o.top} rescored on the whole split" if o.top else f"{o.batches} batch(es) each",
                 100 * best[0])
        return best[2]

    def describe(self):
        o = self.options
        return f"rsws (uniform single paths; then {o.samples} random cells on {o.batches} batch(es), top {o.top})"
