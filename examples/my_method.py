"""A search method of your own, used without editing the library:

    darts-forge search --plugin examples/my_method.py --method tempered --tempered-t-start 3

Subclass :class:`darts.methods.SearchMethod`, declare its options as a dataclass (they become flags and keywords:
``--tempered-t-start`` here, ``darts.search(method="tempered", tempered_t_start=3)`` in Python), override the hooks
you need, and register it.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from darts import SearchMethod, option, register_method


@register_method
class TemperedSoftmax(SearchMethod):
    """DARTS with a softmax temperature annealed from ``t_start`` to ``t_end``: flatter op weights early, plain DARTS
    at the end."""

    name = "tempered"
    paper = "an example: DARTS (Liu et al., ICLR 2019) with an annealed softmax temperature"
    flag_prefix = "tempered"

    @dataclass
    class Options:
        t_start: float = option(5.0, "softmax temperature at the first epoch", positive=True)
        t_end: float = option(1.0, "temperature at the last epoch", positive=True)

    def setup(self):
        self.t = self.options.t_start

    def op_weights(self, alpha: torch.Tensor, group: str, training: bool) -> torch.Tensor:
        return F.softmax(alpha / self.t, dim=-1)

    def start_epoch(self, model, epoch: int, epochs: int) -> dict:
        o = self.options
        self.t = o.t_start + (o.t_end - o.t_start) * epoch / max(epochs - 1, 1)
        return {"temperature": self.t}
