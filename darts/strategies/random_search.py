"""Random search: every cell drawn uniformly from the space (Li & Talwalkar, UAI 2019; the NAS-Bench-201 paper's
RS baseline, AutoDL-Projects ``exps/NATS-algos/random_wo_share.py``). Draws are with replacement, as the authors'."""
from __future__ import annotations

from .base import Strategy, register_strategy


@register_strategy
class RandomSearch(Strategy):
    name = "random"
    paper = "Li and Talwalkar, Random Search and Reproducibility for NAS, UAI 2019; Dong and Yang, ICLR 2020 (RS)"

    def ask(self):
        return self.encoding.random(self.rng)
