"""A search method of your own, used without editing the library:

    python train_search.py --ops-module examples/my_method.py --method tempered

Subclass :class:`darts.methods.SearchMethod`, override the hooks you need, and register it.
"""
import torch
import torch.nn.functional as F

from darts.methods import SearchMethod, register_method


@register_method
class TemperedSoftmax(SearchMethod):
    """DARTS with a softmax temperature annealed from 5 to 1: flatter op weights early, plain DARTS at the end."""

    name = "tempered"
    paper = "an example: DARTS (Liu et al., ICLR 2019) with an annealed softmax temperature"

    def __init__(self, t_start: float = 5.0, t_end: float = 1.0):
        self.t_start, self.t_end, self.t = t_start, t_end, t_start

    def op_weights(self, alpha: torch.Tensor, group: str, training: bool) -> torch.Tensor:
        return F.softmax(alpha / self.t, dim=-1)

    def start_epoch(self, model, epoch: int, epochs: int) -> dict:
        self.t = self.t_start + (self.t_end - self.t_start) * epoch / max(epochs - 1, 1)
        return {"temperature": self.t}
