"""Early stopping against the collapse of DARTS onto parameter-free ops: the DARTS+ skip-count rule (Liang et
al., 2019), and the RobustDARTS rule on the largest eigenvalue of ∇²_α L_val (Zela et al., ICLR 2020, Sec. 4),
computed by Lanczos on exact Hessian-vector products.
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn as nn

from .errors import NonFiniteLossError
from .registry import Registry

log = logging.getLogger(__name__)

SKIP_OP = "skip_connect"


# -- eigenvalues of ∇²_α L_val ------------------------------------------------------------------

def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _split_like(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for t in like:
        out.append(vector[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


@contextmanager
def _alpha_hvp(model: nn.Module, criterion, batches, reduce):
    """``(hvp, n, ref)`` for ∇²_α L_val on ``batches``: ``hvp(v)`` is the exact product with a flat vector ``v`` of
    length ``n``. The model's buffers (BatchNorm running statistics) are restored on exit.

    Each product is a double backward (Pearlmutter's trick): ``g = ∇α L`` with ``create_graph=True`` once, then
    ``H v = ∇α (g · v)`` per product on the retained graph, so the forward runs once and every product sees the
    same batch statistics. Memory is about that of one second-order DARTS α step per batch.
    """
    alphas = list(model.arch_parameters())
    if not alphas:
        raise ValueError("model.arch_parameters() is empty: there is no α to take the Hessian over")
    if not all(a.requires_grad for a in alphas):
        raise ValueError("every tensor of model.arch_parameters() must require grad")
    if not batches:
        raise ValueError("batches is empty: L_val needs at least one (x, y) batch")
    # Train-mode BatchNorm updates running statistics on every forward; the measurement must not move them.
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        # Full precision even inside an --amp region: second derivatives of a bfloat16 forward are mostly noise.
        with torch.enable_grad(), torch.autocast(alphas[0].device.type, enabled=False):
            loss = sum(criterion(model(x), y) for x, y in batches) / len(batches)
            if not torch.isfinite(loss.detach()):
                raise NonFiniteLossError(f"validation loss is {float(loss.detach())} while computing the Hessian")
            # allow_unused: an α that does not reach the loss (a cell type absent from this model) has a zero row.
            grads = torch.autograd.grad(loss, alphas, create_graph=True, allow_unused=True)
            grads = [torch.zeros_like(a) if g is None else g for g, a in zip(grads, alphas)]

            def hvp(v: torch.Tensor) -> torch.Tensor:
                gv = sum((g * u).sum() for g, u in zip(grads, _split_like(v, alphas)))
                if not gv.requires_grad:  # L is linear in α: the Hessian is zero
                    hv = [torch.zeros_like(a) for a in alphas]
                else:
                    hv = torch.autograd.grad(gv, alphas, retain_graph=True, allow_unused=True)
                    hv = [torch.zeros_like(a) if h is None else h.detach() for h, a in zip(hv, alphas)]
                if reduce is not None:
                    hv = reduce(hv)
                out = _flat(hv)
                if not torch.isfinite(out).all():
                    raise NonFiniteLossError("a Hessian-vector product is not finite")
                return out

            yield hvp, sum(a.numel() for a in alphas), alphas[0]
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved[name])


def _start_vector(n: int, ref: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # A fixed generator: reproducible, equal on all ranks, and the search's global RNG stream is not consumed
    # (enabling --early-stop must not change the rest of the run).
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    v = torch.randn(n, generator=generator, device=generator.device, dtype=ref.dtype).to(ref.device)
    return v / v.norm()


def dominant_hessian_eigenvalue(
    model: nn.Module,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    iters: int = 20,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> float:
    """The largest-magnitude eigenvalue of ∇²_α L_val, by power iteration on exact Hessian-vector products.

    This is the dominant eigenvalue in magnitude, with its sign; RobustDARTS's rule reads the largest *signed* one,
    :func:`largest_hessian_eigenvalue` (the two differ when the Hessian is indefinite and its most negative
    eigenvalue is the larger in size). When two eigenvalues of opposite sign have nearly the same size power
    iteration converges slowly and returns a value between them (debug-logged as not converged within ``iters``).

    Args:
        model: exposes ``arch_parameters()`` (an ordered list of tensors that require grad, of any number and
            shape; they are flattened into one vector of length N) and ``model(x) -> logits``. Its mode is left as
            the caller set it (train mode during the search, as in RobustDARTS). BatchNorm running statistics and
            every other buffer are restored afterwards; no ``.grad`` is written.
        criterion: ``(logits, targets) -> scalar`` loss.
        batches: list of ``(x, y)`` validation batches; L_val is the mean of ``criterion`` over them. The graphs
            of all of them are held at once, so pass one or a few.
        iters: maximum number of Hessian-vector products (power-iteration steps).
        tol: stop once the Rayleigh quotient changes by at most ``tol·|λ|`` between two steps. It converges
            at the rate (λ₂/λ₁)² per step.
        generator: draws the start vector (on the generator's device). Default: a fresh generator seeded with 0.
        reduce: averages a list of tensors over processes (e.g. ``lambda t: all_reduce_mean(t, env)`` from
            :mod:`darts.distributed`); applied to every H v so that all ranks iterate on the Hessian of the
            all-rank mean loss and return the same number. Pass the bare model, not its DDP wrapper.

    Returns:
        The Rayleigh quotient vᵀHv of the last unit vector v (a Python float, with its sign).

    Raises:
        NonFiniteLossError: the loss or a Hessian-vector product is not finite.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    with _alpha_hvp(model, criterion, batches, reduce) as (hvp, n, ref):
        v = _start_vector(n, ref, generator)
        eigenvalue, previous, step = 0.0, None, 0
        for step in range(1, iters + 1):
            hv = hvp(v)
            eigenvalue = float(torch.dot(v, hv))  # Rayleigh quotient: v is a unit vector
            if not math.isfinite(eigenvalue):
                raise NonFiniteLossError(f"Hessian-vector product is not finite (vᵀHv = {eigenvalue})")
            norm = hv.norm()
            if norm == 0:  # v lies in the null space (or H = 0): 0 is the honest answer
                break
            if previous is not None and abs(eigenvalue - previous) <= tol * abs(eigenvalue):
                break
            previous = eigenvalue
            v = hv / norm
        else:
            log.debug("power iteration stopped at iters=%d before reaching tol=%g", iters, tol)
        log.debug("dominant Hessian eigenvalue %.6g after %d Hessian-vector products", eigenvalue, step)
        return eigenvalue


def largest_hessian_eigenvalue(
    model: nn.Module,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    iters: int = 20,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
    reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> float:
    """The largest (signed) eigenvalue λ_max of ∇²_α L_val, by Lanczos on exact Hessian-vector products.

    RobustDARTS (Zela et al., 2020, Sec. 4) tracks λ_max of the Hessian of the validation loss w.r.t. α, which grows
    as the search collapses onto sharp, parameter-free cells. Their code builds the dense Hessian and takes
    ``max(eigvals(H))`` (``train_search.py``), the largest signed value, not the largest in magnitude; with 2·14·8 =
    224 entries of α that costs 224 double-backward passes. The Lanczos process (with full reorthogonalisation)
    finds the extreme eigenvalues of a symmetric matrix from a Krylov space of a few products: the largest Ritz value
    of the tridiagonal matrix rises to λ_max from below, and the iteration stops once it rises by at most
    ``tol·|λ|``, after ``iters`` products, or when the Krylov space is exhausted (then it is exact).

    Arguments as :func:`dominant_hessian_eigenvalue` (``iters``: the most Hessian-vector products, at most N).

    Returns:
        λ_max, a Python float (negative when every eigenvalue is).

    Raises:
        NonFiniteLossError: the loss or a Hessian-vector product is not finite.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    with _alpha_hvp(model, criterion, batches, reduce) as (hvp, n, ref):
        Q = [_start_vector(n, ref, generator)]
        diag: list[float] = []
        off: list[float] = []
        top, previous = 0.0, None
        for step in range(min(iters, n)):
            w = hvp(Q[-1])
            diag.append(float(torch.dot(Q[-1], w)))
            for _ in range(2):  # full reorthogonalisation, twice ("twice is enough"), keeps the Ritz values clean
                for q in Q:
                    w = w - torch.dot(q, w) * q
            T = torch.diag(torch.tensor(diag, dtype=torch.float64))
            if off:
                T += torch.diag(torch.tensor(off, dtype=torch.float64), 1) + torch.diag(
                    torch.tensor(off, dtype=torch.float64), -1)
            top = float(torch.linalg.eigvalsh(T)[-1])
            beta = float(w.norm())
            scale = max(abs(d) for d in diag) or 1.0
            if beta <= 1e-10 * scale:  # the Krylov space is invariant: the Ritz values are eigenvalues
                break
            if previous is not None and top - previous <= tol * abs(top):
                break
            previous = top
            off.append(beta)
            Q.append(w / beta)
        log.debug("largest Hessian eigenvalue %.6g after %d Hessian-vector products", top, len(diag))
        return top


# -- the early-stop rules: one interface ------------------------------------------------------------------------

class EarlyStop:
    """An early-stop rule: after every epoch the search calls :meth:`observe` with the epoch (counted from 1), the
    genotype derived then and the epoch's metrics; True stops the search.

    Attributes:
        needs: metrics the rule reads (the search computes them for it, e.g. ``hessian_eigenvalue``).
        reason: a line for the log once the rule fired, else ``""``.
        stop_epoch: once fired, the epoch whose cell the search returns instead of the last one, or None.
    """

    needs: ClassVar[tuple[str, ...]] = ()
    reason: str = ""
    stop_epoch: int | None = None

    def observe(self, epoch: int, genotype, metrics: dict) -> bool:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


#: the values of ``--early-stop`` (besides ``off``): name -> ``factory(cfg) -> EarlyStop``
EARLY_STOPS: Registry = Registry("early-stop rule", flag="--early-stop")


# -- DARTS+: too many skip connections ------------------------------------------------------------------------

def count_skips(genotype, op_name: str = SKIP_OP) -> int:
    """Number of ``op_name`` edges in the normal cell of ``genotype`` (anything with a ``.normal`` edge list)."""
    return sum(1 for op, _ in genotype.normal if op == op_name)


class SkipEarlyStop(EarlyStop):
    """The DARTS+ rule: stop once the derived normal cell has ``max_skips`` or more skip connections.

    Liang et al. (2019) stop "when there are two or more than two skip-connects in one normal cell":
    the collapse of DARTS shows first as skips taking over the normal cell. The count must come from the
    *unconstrained* genotype (``model.genotype(max_skip=None)``): a genotype derived with a skip limit hides the
    very signal this rule reads.

    Args:
        max_skips: number of skips in the normal cell that counts as collapse (2 in the paper).
        patience: number of consecutive epochs the condition must hold before stopping (1 in the paper: stop at
            the first such epoch). More than 1 ignores a skip count that flickers for an epoch.
        op_name: the op counted as a skip connection.

    Attributes:
        streak: consecutive epochs so far with ``>= max_skips`` skips.
        last_count: skip count at the last update (``None`` before the first).
        reason: a line for the log once the rule fired, else ``""``.
    """

    def __init__(self, max_skips: int = 2, patience: int = 1, op_name: str = SKIP_OP):
        if max_skips < 1:
            raise ValueError(f"max_skips must be >= 1, got {max_skips}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.max_skips = max_skips
        self.patience = patience
        self.op_name = op_name
        self.streak = 0
        self.last_count: int | None = None
        self.reason = ""

    def update(self, genotype_or_count) -> bool:
        """Record one epoch: a genotype (its normal cell is counted) or the skip count itself. True: stop now."""
        if isinstance(genotype_or_count, bool) or not isinstance(genotype_or_count, int):
            count = count_skips(genotype_or_count, self.op_name)
        else:
            count = genotype_or_count
        self.last_count = count
        self.streak = self.streak + 1 if count >= self.max_skips else 0
        stop = self.streak >= self.patience
        self.reason = (
            f"DARTS+ early stop: the normal cell has {count} {self.op_name} (>= {self.max_skips}) "
            f"for {self.streak} consecutive epoch(s) (patience {self.patience})"
        ) if stop else ""
        return stop

    def observe(self, epoch, genotype, metrics):
        return self.update(genotype)

    def state_dict(self) -> dict:
        """Plain Python values (``torch.load(weights_only=True)`` and JSON accept them)."""
        return {"max_skips": self.max_skips, "patience": self.patience, "op_name": self.op_name,
                "streak": self.streak, "last_count": self.last_count, "reason": self.reason}

    def load_state_dict(self, state: dict) -> None:
        """Continue the count of a saved run. The thresholds stay those given to the constructor."""
        if (state["max_skips"], state["patience"]) != (self.max_skips, self.patience):
            log.warning("resuming SkipEarlyStop saved with max_skips=%s patience=%s under max_skips=%s patience=%s",
                        state["max_skips"], state["patience"], self.max_skips, self.patience)
        self.streak = int(state["streak"])
        self.last_count = None if state["last_count"] is None else int(state["last_count"])
        self.reason = str(state.get("reason", ""))


# -- RobustDARTS: the dominant eigenvalue grows -----------------------------------------------------------------

class HessianEarlyStop(EarlyStop):
    """The RobustDARTS rule (DARTS-ES): stop when the smoothed largest eigenvalue has grown by ``ratio``.

    Zela et al. (2020, Sec. 4) stop at epoch i if λ̄(i−k) / λ̄(i) < 0.75, where λ̄ is λ_max averaged over a
    local window, and return the architecture of epoch i−k. Here the eigenvalues are records ``(epoch, λ)``
    taken every K epochs (``--hessian-every``), λ̄ at record j is the mean of the ``window`` records ending at j,
    and the rule fires at record n when

        λ̄(n − lag) > 0  and  λ̄(n) > ratio · λ̄(n − lag).

    Their code (``EVLocalAvg.early_stop``) uses ``factor=1.3``, ``delta=4`` records, ``window=5``, a record every
    2 epochs (their scripts' ``--report_freq_hessian 2``), and ignores the rule until the epoch it would return is
    ``>= es_start_epoch=10``; the defaults here are those. Two deliberate differences: λ̄ is only formed over full
    windows (their first averages are over 3 and 4 records, which the start epoch keeps out of every comparison at
    the defaults), and the rule needs λ̄(n − lag) > 0, where theirs divides by any sign (a growth ratio of negative
    eigenvalues says nothing about sharpness).

    Args:
        ratio: growth factor that fires the rule (the code's 1.3; the paper's 1/0.75 ≈ 1.33).
        lag: records between the two compared averages (4, the code's ``delta``). The look-back in epochs is
            ``lag·K``.
        window: records averaged into λ̄ (1: no smoothing; the code's 5). The eigenvalue on one batch is noisy:
            smoothing makes the rule steadier at the price of ``window//2`` records of delay.
        start_epoch: the rule is not applied until the earlier compared epoch is at least this. λ_max rises
            steeply from its small value at initialisation, which is warm-up, not collapse (the code's 10).

    Attributes:
        history: list of ``(epoch, λ)`` records, in epoch order.
        stop_epoch: once the rule fired, the epoch whose architecture RobustDARTS returns (the centre of the
            earlier window, before λ grew); ``None`` before.
        reason: a line for the log once the rule fired, else ``""``.
    """

    def __init__(self, ratio: float = 1.3, lag: int = 4, window: int = 5, start_epoch: int = 10):
        if not ratio > 1:
            raise ValueError(f"ratio must be > 1 (a growth factor), got {ratio}")
        if lag < 1 or window < 1:
            raise ValueError(f"lag and window must be >= 1, got lag={lag} window={window}")
        self.ratio = ratio
        self.lag = lag
        self.window = window
        self.start_epoch = start_epoch
        self.history: list[tuple[int, float]] = []
        self.stop_epoch: int | None = None
        self.reason = ""

    def _smoothed(self, end: int) -> float:
        """λ̄ at record index ``end``: the mean of the ``window`` records ending there."""
        return sum(lam for _, lam in self.history[end - self.window + 1:end + 1]) / self.window

    def update(self, epoch: int, eigenvalue: float) -> bool:
        """Record λ at ``epoch`` and apply the rule. True: stop now (the architecture to keep is ``stop_epoch``'s).

        A record at an epoch not after the last one replaces the records from that epoch on, so a resumed run
        that recomputes an epoch does not count it twice.
        """
        eigenvalue = float(eigenvalue)
        if not math.isfinite(eigenvalue):
            raise NonFiniteLossError(f"dominant Hessian eigenvalue at epoch {epoch} is {eigenvalue}")
        while self.history and self.history[-1][0] >= epoch:
            self.history.pop()
        self.history.append((int(epoch), eigenvalue))

        n = len(self.history) - 1
        if n - self.lag - self.window + 1 < 0:  # not enough records for two full windows yet
            return False
        earlier = n - self.lag
        # As RobustDARTS, the architecture to return is the one at the centre of the earlier window.
        rollback = self.history[earlier - self.window // 2][0]
        if rollback < self.start_epoch:
            return False
        before, now = self._smoothed(earlier), self._smoothed(n)
        if not (before > 0 and now > self.ratio * before):
            return False
        self.stop_epoch = rollback
        self.reason = (
            f"RobustDARTS early stop: mean dominant eigenvalue of the α-Hessian grew {now / before:.3g}x "
            f"(> {self.ratio:.3g}) from {before:.4g} (epoch {self.history[earlier][0]}) to {now:.4g} (epoch {epoch}); "
            f"architecture of epoch {rollback} is the one to keep"
        )
        return True

    needs = ("hessian_eigenvalue",)

    def observe(self, epoch, genotype, metrics):
        if "hessian_eigenvalue" not in metrics:  # computed every K epochs only
            return False
        return self.update(epoch, metrics["hessian_eigenvalue"])

    def state_dict(self) -> dict:
        """Plain Python values (``torch.load(weights_only=True)`` and JSON accept them)."""
        return {"ratio": self.ratio, "lag": self.lag, "window": self.window, "start_epoch": self.start_epoch,
                "history": [[e, lam] for e, lam in self.history], "stop_epoch": self.stop_epoch,
                "reason": self.reason}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved run's records. The rule's parameters stay those given to the constructor."""
        saved = (state["ratio"], state["lag"], state["window"], state["start_epoch"])
        if saved != (self.ratio, self.lag, self.window, self.start_epoch):
            log.warning("resuming HessianEarlyStop saved with (ratio, lag, window, start_epoch)=%s under %s",
                        saved, (self.ratio, self.lag, self.window, self.start_epoch))
        self.history = [(int(e), float(lam)) for e, lam in state["history"]]
        self.stop_epoch = None if state["stop_epoch"] is None else int(state["stop_epoch"])
        self.reason = str(state.get("reason", ""))


EARLY_STOPS.register("skip", lambda cfg: SkipEarlyStop(patience=cfg.skip_patience), origin=__name__)
EARLY_STOPS.register("hessian", lambda cfg: HessianEarlyStop(ratio=cfg.hessian_ratio, lag=cfg.hessian_lag,
                                                             window=cfg.hessian_window, start_epoch=cfg.hessian_start),
                     origin=__name__)
