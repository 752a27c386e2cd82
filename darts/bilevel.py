"""The bilevel step of DARTS (Liu et al., 2019, Sec. 2.3): an α step on the validation loss, then a weight step.

First order sets ∇α L_val(w, α) as α's gradient. Second order differentiates through one unrolled SGD step
w' = w − ξ ∇w L_train(w, α) (Eq. 6-7):

    ∇α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) · ∇w' L_val(w', α)

and the Hessian-vector product is either the paper's central finite difference (Eq. 8, radius
ε = 0.01 / ‖∇w' L_val‖) or exact, by double backward. The unrolled weights are plain tensors passed through
``torch.func.functional_call``: the model is never copied or rebuilt.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.func import functional_call

from .errors import NonFiniteLossError

ORDERS = ("first", "second")
HVPS = ("finite-difference", "exact")


@dataclass
class StepStats:
    """Losses of one bilevel step (Python floats, read once per step)."""

    val_loss: float
    train_loss: float
    train_correct: int
    train_count: int


def _grad(output, inputs, **kw) -> list[torch.Tensor]:
    """``torch.autograd.grad`` with zeros for inputs the output does not depend on (e.g. the weights of the ops
    GDAS did not sample this step): their gradient is zero, not missing."""
    grads = torch.autograd.grad(output, inputs, allow_unused=True, **kw)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]


def _check_finite(value: torch.Tensor, what: str) -> float:
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        raise NonFiniteLossError(f"{what} is {v}")
    return v


class BilevelOptimizer:
    """Alternating α and weight updates on a :class:`darts.search.Supernet`.

    Args:
        model: the supernet (``arch_parameters()``, ``named_weight_parameters()``, ``forward(x) -> logits``).
        criterion: loss ``(logits, targets) -> scalar``.
        w_optimizer: SGD over ``model.weight_parameters()`` (its momentum buffers enter the unrolled step).
        a_optimizer: optimizer over ``model.arch_parameters()`` (Adam in the paper).
        order: ``first`` or ``second``.
        hvp: ``finite-difference`` (Eq. 8) or ``exact`` (double backward), for second order.
        grad_clip: max global norm of the weight gradient in the weight step (5 in the paper).
        fd_radius: the finite-difference radius is ``fd_radius / ‖∇w' L_val‖`` (0.01 in the paper).
        reduce: averages a list of gradient tensors over processes (identity by default). Under ``torchrun``
            it is :func:`darts.distributed.all_reduce_mean`: every gradient that enters an update, α's and the
            unrolled step's, is the all-rank mean, so all ranks compute the same α.
        train_module: what the weight step calls, e.g. the DDP wrapper of ``model`` (default ``model``).
        amp_dtype: run the weight step's forward under ``torch.autocast`` in this dtype (bfloat16 for
            ``--amp``); the α step always runs in full precision, since α's gradients are small differences.
        arch_penalty: ``model -> scalar`` depending on α only, added to the α step's loss (``--cost-target``'s
            expected-cost penalty); None for none.

    The model's search method (``model.method``, a :class:`darts.methods.SearchMethod`) enters here in three
    places: it draws its noise before each step (``resample``), adds its regulariser of α to the α step
    (``arch_loss``; it depends on α only, so in second order too its gradient simply adds to Eq. 7), and may
    perturb α around the weight step (``weight_step_perturbation``).
    """

    def __init__(self, model: nn.Module, criterion, w_optimizer: torch.optim.SGD, a_optimizer: torch.optim.Optimizer,
                 order: str = "first", hvp: str = "finite-difference", grad_clip: float = 5.0,
                 fd_radius: float = 0.01, reduce=None, train_module: nn.Module | None = None,
                 amp_dtype: torch.dtype | None = None, arch_penalty=None):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if hvp not in HVPS:
            raise ValueError(f"hvp must be one of {HVPS}, got {hvp!r}")
        self.model, self.criterion = model, criterion
        self.w_optimizer, self.a_optimizer = w_optimizer, a_optimizer
        self.order, self.hvp, self.grad_clip, self.fd_radius = order, hvp, grad_clip, fd_radius
        self.reduce = reduce or (lambda tensors: tensors)
        self.train_module = train_module if train_module is not None else model
        self.amp_dtype = amp_dtype
        self.method = getattr(model, "method", None)
        self.arch_penalty = arch_penalty

    # -- helpers --------------------------------------------------------------------------------------
    def _loss_at(self, weights: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x, y):
        """L(weights, α) on (x, y); α are the model's own parameters, so gradients reach them."""
        return self.criterion(functional_call(self.model, {**weights, **buffers}, (x,)), y)

    def _sgd_hyper(self):
        g = self.w_optimizer.param_groups[0]
        return g["momentum"], g["weight_decay"]

    # -- α gradient -----------------------------------------------------------------------------------
    def arch_gradient(self, train_batch, val_batch, xi: float) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The α gradient of the current order plus that of the method's regulariser, and the validation loss
        (at w for first order, at w'; without the regulariser)."""
        alphas = self.model.arch_parameters()
        if self.method is not None:
            self.method.resample(self.model)
        grads, loss = self._data_arch_gradient(train_batch, val_batch, xi)
        for reg in (self.method.arch_loss(self.model) if self.method is not None else None,
                    self.arch_penalty(self.model) if self.arch_penalty is not None else None):
            if reg is not None:
                extra = torch.autograd.grad(reg, alphas, allow_unused=True)
                grads = [g if e is None else g + e for g, e in zip(grads, extra)]
        return grads, loss

    def _data_arch_gradient(self, train_batch, val_batch, xi: float):
        alphas = self.model.arch_parameters()
        x_val, y_val = val_batch
        if self.order == "first":
            loss = self.criterion(self.model(x_val), y_val)
            return list(self.reduce(_grad(loss, alphas))), loss.detach()

        names, W = zip(*self.model.named_weight_parameters())
        # Copies of the BN buffers: the unrolled and finite-difference passes must not move the running stats.
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        x_tr, y_tr = train_batch
        exact = self.hvp == "exact"

        # Eq. 6: one SGD step with the optimizer's momentum and weight decay, w' = w − ξ(μ v + ∇w L_train + λ w).
        loss_tr = self._loss_at(dict(zip(names, W)), buffers, x_tr, y_tr)
        _check_finite(loss_tr.detach(), "training loss of the unrolled step")
        g_w = _grad(loss_tr, W, create_graph=exact)
        mu, wd = self._sgd_hyper()
        unrolled = {}
        with torch.no_grad():
            g_mean = self.reduce([g.detach() for g in g_w])  # the step every rank's SGD will take
            for n, w, g in zip(names, W, g_mean):
                buf = self.w_optimizer.state.get(w, {}).get("momentum_buffer")
                step = g + wd * w if buf is None else mu * buf + g + wd * w
                unrolled[n] = (w - xi * step).requires_grad_(True)

        # Eq. 7, first term: gradients of L_val at (w', α).
        loss_val = self._loss_at(unrolled, buffers, x_val, y_val)
        grads = self.reduce(_grad(loss_val, [*alphas, *unrolled.values()]))
        d_alpha, d_w = grads[: len(alphas)], grads[len(alphas) :]

        # Eq. 7, second term: ∇²_{α,w} L_train(w, α) · d_w.
        if exact:
            # Hessians average like gradients: ∇α(mean_r g_r · v) = mean_r ∇α(g_r · v).
            dot = sum((g * v).sum() for g, v in zip(g_w, d_w))
            hvp = self.reduce(_grad(dot, alphas))
        else:
            hvp = self._finite_difference_hvp(names, W, d_w, buffers, x_tr, y_tr)
        return [da - xi * h for da, h in zip(d_alpha, hvp)], loss_val.detach()

    def _finite_difference_hvp(self, names, W, v, buffers, x, y):
        """Eq. 8: (∇α L_train(w + εv) − ∇α L_train(w − εv)) / 2ε with ε = fd_radius / ‖v‖."""
        alphas = self.model.arch_parameters()
        norm = torch.sqrt(sum((t * t).sum() for t in v))
        eps = self.fd_radius / norm
        out = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                shifted = {n: w + sign * eps * t for n, w, t in zip(names, W, v)}
            out.append(_grad(self._loss_at(shifted, buffers, x, y), alphas))
        return self.reduce([(gp - gn) / (2 * eps) for gp, gn in zip(*out)])

    # -- the two steps --------------------------------------------------------------------------------
    def arch_step(self, train_batch, val_batch, xi: float) -> float:
        """One α update (α only; the weights are not touched). ``xi`` is the weights' current learning rate."""
        grads, loss = self.arch_gradient(train_batch, val_batch, xi)
        val = _check_finite(loss, "validation loss")
        for a, g in zip(self.model.arch_parameters(), grads):
            if not torch.isfinite(g).all():
                raise NonFiniteLossError("α gradient is not finite")
            a.grad = g
        self.a_optimizer.step()
        return val

    def weight_step(self, train_batch) -> tuple[float, int]:
        """One SGD step on the weights (α untouched). Returns (loss, number of correct predictions)."""
        x, y = train_batch
        weights = self.model.weight_parameters()
        if self.method is not None:
            self.method.resample(self.model)
        perturb = self.method.weight_step_perturbation(self.model) if self.method is not None else nullcontext()
        with perturb:
            with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.bfloat16,
                                enabled=self.amp_dtype is not None):
                logits = self.train_module(x)
                loss = self.criterion(logits, y)
            self.w_optimizer.zero_grad(set_to_none=True)
            # No α gradient is computed or accumulated here; under DDP its hooks average the weight gradients.
            # Backward runs inside the perturbation: α must hold the value the forward pass used.
            loss.backward(inputs=weights)
        value = _check_finite(loss.detach(), "training loss")
        norm = nn.utils.clip_grad_norm_(weights, self.grad_clip)
        _check_finite(norm, "weight gradient norm")
        self.w_optimizer.step()
        return value, int((logits.argmax(1) == y).sum())

    def step(self, train_batch, val_batch, xi: float, update_arch: bool = True) -> StepStats:
        """The DARTS iteration (Alg. 1): α step on a validation batch, then weight step on a training batch.

        ``update_arch=False`` skips the α step (the warm-up epochs of PC-DARTS and DrNAS); ``val_loss`` is NaN."""
        val_loss = self.arch_step(train_batch, val_batch, xi) if update_arch else float("nan")
        train_loss, correct = self.weight_step(train_batch)
        return StepStats(val_loss, train_loss, correct, int(train_batch[1].numel()))
