"""The seam every search method plugs into, and plain DARTS as its default implementation.

A method differs from DARTS in at most these places (NNI's and NASLib's "get / process / apply weights"):

* ``op_weights``: how α becomes the op weights of the forward pass (softmax in DARTS Eq. 2; sigmoid, Gumbel
  or Dirichlet samples in the successors);
* ``build_edge``: the module computing one edge from those weights (partial channels, one sampled op, an
  auxiliary skip);
* ``edge_coefficients``: a per-edge factor on each edge's output inside a node (PC-DARTS edge normalisation);
* ``arch_loss``: a regulariser added to the validation loss of the α step;
* ``weight_step_perturbation``: a change of α during the weight step only (SDARTS random smoothing);
* ``start_epoch``: schedules (temperatures, decays), a function of the epoch and of what the checkpoint holds, so
  resuming needs no other state;
* ``updates_arch``: which epochs step α (``--arch-warmup`` freezes it for the first epochs);
* ``derive_weights`` and ``cell_rule``: the op strengths the discretizer reads, and the rule it applies;
* ``presets_for``: the settings of the method's authors, per search space and data-set scale;
* ``bind``, ``after_epoch``, ``final_genotype``, ``current_genotype``: what a sampling method (ENAS, RS-WS, SPOS)
  adds: the space it samples cells of, a controller's training after each epoch, and the final choice of a cell
  by its accuracy on the shared weights.

A method declares its options as a dataclass (``Options``, fields made with :func:`darts.options.option`); its
command-line flags (``--{flag_prefix}-{field}``), defaults and validation are generated from it. The supernet and the
bilevel step call these hooks and nothing else; a new method is one subclass registered with
:func:`darts.methods.register_method`, in a file of its own.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..options import OptionsOwner
from ..supernet import MixedOp


@dataclass
class SearchContext:
    """What a method's :meth:`SearchMethod.after_epoch` and :meth:`SearchMethod.final_genotype` may use.

    ``val_stream`` is the search's endless, checkpointed stream of validation batches (this rank's shard),
    ``val_loader`` the validation split in a fixed order (every rank sees all of it), ``train_batches(n)`` the first
    ``n`` training batches of a fixed pass (for BatchNorm recalibration), ``reduce`` the all-rank mean of a list of
    tensors (identity for one process), ``to_device`` moves a batch where the model runs, ``arch_optimizer`` is the
    optimizer of the architecture parameters (a controller's too). A long final choice checkpoints itself with
    ``save_phase(name, state)`` (tensors and plain values) and continues from ``load_phase(name)`` (None when there
    is nothing to continue) after a kill.
    """

    device: object
    val_stream: object
    val_loader: object
    train_batches: Callable
    reduce: Callable
    to_device: Callable
    epochs: int
    main: bool = True
    arch_optimizer: object = None
    save_phase: Callable | None = None
    load_phase: Callable | None = None


class SearchMethod(OptionsOwner):
    """The hooks of a search method, with DARTS's behaviour (Liu, Simonyan, Yang, "DARTS: Differentiable
    Architecture Search", ICLR 2019: softmax over α) as the default of each.

    Construct with the options as keywords (``PCDARTS(k=2)``) or as an ``Options`` instance; they are validated
    against their declarations (:class:`darts.errors.ConfigError` naming the flag), then :meth:`setup` runs.

    Class attributes a subclass sets:
        name: the ``--method`` value.
        paper: the citation printed in ``--help`` and the README.
        Options: a dataclass of the method's options (fields from :func:`darts.options.option`).
        flag_prefix: the prefix of their flags and keywords (``pc`` -> ``--pc-k``, ``darts.search(pc_k=...)``).
        presets: config fields the method's authors set differently from DARTS, used where the user did not set
            them: ``{"paper": {...}, "small": {...}, SPACE: {...}, "SPACE/paper": {...}, "SPACE/small": {...}}``.
            ``paper`` applies to the full-size data sets (CIFAR, ImageFolder, your own), ``small`` to the embedded
            and synthetic sets (epochs scaled down); a space's entries apply in that space, after the scale's. Keys
            are option keywords: the general ones (``lr``), the space's (``layers``) or the method's own (``pc_k``).
        generic_cell: True when the method changes how an edge or a node is computed, so the search cell runs
            edge by edge (each edge still through the ``--kernels`` mixed-op implementation) instead of the
            fused cell path.
        uses_all_weights: False when a step may leave some weights without a gradient (GDAS), which
            DistributedDataParallel must be told.
        uses_op_mask: True to give every α group a boolean op mask (``model.alphas.mask(group)``): masked ops get
            weight 0 and the rest of the edge's weights are renormalised, in the forward pass and the discretizer
            (DrNAS's op pruning).
        softmax_relaxation: False for a method whose op weights are not a softmax of α (``--beta-decay``, the
            β-DARTS regulariser of softmax logits, is refused then).
        uses_alpha: False for a method that samples cells without relaxing α (ENAS, RS-WS, SPOS): α is neither
            stepped nor read, and the options of α (``--order second``, ``--cost-target``, ``--arch-*``) are refused.
        cell_rule, cell_threshold: the discretizer's rule (see :func:`darts.genotype.derive_genotype`) and the
            threshold of the ``threshold`` rule, for the DARTS space.
    """

    kind: ClassVar[str] = "method"
    presets: ClassVar[dict[str, dict]] = {}
    generic_cell: ClassVar[bool] = False
    uses_all_weights: ClassVar[bool] = True
    uses_op_mask: ClassVar[bool] = False
    softmax_relaxation: ClassVar[bool] = True
    cell_rule: str = "darts"
    cell_threshold: float | None = None
    uses_alpha: ClassVar[bool] = True

    def check_run(self, cfg, space) -> None:
        """Raise :class:`ConfigError` if the method cannot run with the general settings ``cfg`` in ``space``."""

    def presets_for(self, space: str, paper_scale: bool) -> dict:
        """The settings this method's authors use in ``space`` at the data set's scale (see ``presets``)."""
        scale = "paper" if paper_scale else "small"
        out: dict = {}
        for key in (scale, space, f"{space}/{scale}"):
            out.update(self.presets.get(key, {}))
        return out

    # -- construction -----------------------------------------------------------------------------------
    def build_edge(self, C: int, stride: int, primitives: tuple[str, ...], search_bn: bool = True) -> nn.Module:
        """The module of one edge: ``edge(x, weights_row) -> y``."""
        return MixedOp(C, stride, primitives, search_bn=search_bn)

    def extra_arch_shapes(self, groups: dict[str, int]) -> dict[str, tuple[int, ...]]:
        """Extra architecture parameters (name -> shape) given the α groups (name -> number of edges)."""
        return {}

    def initial_alpha(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The initial value of an α group (DARTS: ``1e-3 · N(0, 1)``, ``cnn/model_search.py``)."""
        return 1e-3 * torch.randn(*shape)

    # -- relaxation -------------------------------------------------------------------------------------
    def op_weights(self, alpha: torch.Tensor, group: str, training: bool) -> torch.Tensor:
        """Op weights ``(edges, K)`` of the forward pass from ``alpha`` ``(edges, K)``: softmax (DARTS Eq. 2)."""
        return F.softmax(alpha, dim=-1)

    def edge_coefficients(self, model, group: str) -> torch.Tensor | None:
        """A factor ``(edges,)`` on every edge's output inside its node, or None (DARTS: none)."""
        return None

    def derive_weights(self, model, group: str) -> torch.Tensor:
        """Op strengths ``(edges, K)`` for the discretizer (DARTS: softmax(α))."""
        return self.op_weights(model.alphas.group(group), group, training=False)

    def resample(self, model) -> None:
        """Draw the noise of the next forward passes (stochastic relaxations); DARTS has none."""

    # -- the bilevel step -------------------------------------------------------------------------------
    def arch_loss(self, model) -> torch.Tensor | None:
        """A regulariser of α added to the validation loss of the α step, or None."""
        return None

    def weight_step_perturbation(self, model):
        """A context manager around the weight step that may change α temporarily (DARTS: does nothing)."""
        return contextlib.nullcontext()

    def start_epoch(self, model, epoch: int, epochs: int) -> dict:
        """Set the schedules for 0-based ``epoch`` of ``epochs``; returns what to log (e.g. a temperature)."""
        return {}

    def updates_arch(self, epoch: int, epochs: int, warmup: int) -> bool:
        """Whether 0-based ``epoch`` takes α steps, given ``--arch-warmup`` epochs of weight steps only."""
        return epoch >= warmup

    # -- sampling methods ------------------------------------------------------------------------------
    def bind(self, space, primitives: tuple[str, ...], seed: int) -> None:
        """Called before the supernet is built, with the space it searches, its primitives and the run's seed."""

    def build_controller(self):
        """An ``nn.Module`` of architecture parameters beyond α (ENAS's LSTM), kept as ``model.alphas.controller``
        and stepped by the α optimizer; None (the default) for none."""
        return None

    def arch_optimizer_options(self) -> dict:
        """Extra keywords of the α optimizer (Adam), e.g. ``eps``."""
        return {}

    def after_epoch(self, model, ctx: SearchContext) -> dict:
        """Run after each epoch's steps (ENAS trains its controller here); returns what to log."""
        return {}

    def current_genotype(self, model):
        """The cell the method shows now, if it is not α's discretization (a sampling method's); None: α's."""
        return None

    def final_genotype(self, model, ctx: SearchContext):
        """The cell the search returns, chosen after the last epoch (None: the cell of the last epoch)."""
        return None

    def epoch_metrics(self, model) -> dict:
        """What to log after each epoch besides the common records (numbers only)."""
        return {}

    def describe(self) -> str:
        """One line for the start-up log."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: (B, g·c, H, W) -> channel ``i·g + j`` holds group ``j``'s ``i``."""
    B, C, H, W = x.shape
    return x.view(B, groups, C // groups, H, W).transpose(1, 2).reshape(B, C, H, W)
