"""A whole search run (DARTS Alg. 1): set up from a :class:`darts.config.SearchSetup`, alternate the α step and the
weight step over the training split for every epoch, log, checkpoint, and write the genotype.

:func:`run_search` reads top-down; the helpers below it build its parts.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .bilevel import BilevelOptimizer
from .collapse import EARLY_STOPS, count_skips, largest_hessian_eigenvalue
from .config import SearchSetup, network_settings
from .costs import SearchCost
from .methods.base import SearchContext
from .methods.beta_darts import BetaDecay
from .data import BatchStream, DataBundle, load_data, make_loader, search_split
from .engine import evaluate, resolve_device, to_device
from .errors import NonFiniteLossError
from .ops import get_op_spec
from .options import to_dict
from .progress import Progress
from .run.checkpoint import fingerprint
from .run.distributed import all_reduce_mean, broadcast_flag, wrap_ddp
from .run.session import Run
from .selection import select_by_perturbation
from .spaces import genotype_from_dict

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """What a search returns: the final ``genotype``, its ``run_dir``, the per-epoch ``metrics`` records (as in
    ``metrics.jsonl``), the trained supernet ``model``, and why it ``stopped`` early (None if it ran to the end)."""

    genotype: object
    run_dir: str
    metrics: list = field(default_factory=list)
    model: nn.Module | None = None
    stopped: str | None = None


def run_search(setup: SearchSetup, data: DataBundle | None = None) -> SearchResult:
    """Run (or resume) the search ``setup`` describes, on ``data`` (default: the data set its config names).

    Under ``torchrun`` every rank runs this; the batch size is per rank and only rank 0 writes the run directory.
    """
    cfg, method, space = setup.cfg, setup.method, setup.space
    with Run.start("search", setup.to_dict(), fingerprint=fingerprint(setup.fingerprint_options()), out=cfg.out,
                   resume=cfg.resume, device=resolve_device(cfg.device),
                   default_out=f"runs/search-{cfg.dataset}-%Y%m%d-%H%M%S",
                   meta={"primitives": list(cfg.primitives)}) as run:
        torch.manual_seed(cfg.seed)
        data = data or load_data(cfg.dataset, cfg.data, cfg.download, cfg.image_size, augment=cfg.dataset != "digits")
        train_loader, val_stream, val_loader = search_loaders(data, cfg, run.env)
        method.bind(space, cfg.primitives, cfg.seed)
        model = space.build_supernet(C=cfg.init_channels, num_classes=data.num_classes, in_channels=data.in_channels,
                                     primitives=cfg.primitives, method=method, kernels=cfg.kernels).to(run.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        impl = model.set_kernels(cfg.kernels, run.device)
        w_opt, a_opt, scheduler = optimizers(model, cfg)
        cost = SearchCost.create(space, cfg, network_settings(space, cfg.dataset), data.num_classes, data.in_channels,
                                 data.image_size, run.device)  # None without --cost
        beta = BetaDecay(cfg.beta_decay) if cfg.beta_decay else None
        reduce = lambda tensors: all_reduce_mean(tensors, run.env)  # noqa: E731  (identity for one process)
        bilevel = BilevelOptimizer(model, nn.CrossEntropyLoss(), w_opt, a_opt, cfg.order, cfg.hvp, cfg.grad_clip,
                                   reduce=reduce, train_module=wrap_ddp(model, run.env, ignore=alpha_names(model),
                                                                        find_unused=not method.uses_all_weights),
                                   amp_dtype=torch.bfloat16 if cfg.amp else None,
                                   arch_penalty=penalties(cost, beta))
        stopper = EARLY_STOPS.create(cfg.early_stop, cfg) if cfg.early_stop != "off" else None
        start, state = run.restore(cfg.epochs, expect=checkpoint_identity(setup), model=model, w_opt=w_opt,
                                   a_opt=a_opt, scheduler=scheduler, val_stream=val_stream)
        stopped, cells = restore_early_stop(stopper, state.get("early_stop"))
        ctx = search_context(run, cfg, a_opt, train_loader, val_stream, val_loader, reduce)
        run.commit()
        log_start(run, setup, data, model, impl, start)

        genotype, records = derive(model, cfg, cost), []
        if stopped:  # resuming a run that had stopped early: it ends at once, with the cell it had chosen
            genotype = rolled_back(stopper, cells, genotype, start - 1, cfg.epochs)
        for epoch in range(start, start if stopped else cfg.epochs):
            t0, lr = time.time(), scheduler.get_last_lr()[0]
            extra = method.start_epoch(model, epoch, cfg.epochs)
            if beta is not None:
                beta.set_epoch(epoch)
                extra["beta_weight"] = beta.weight()
            update_arch = method.updates_arch(epoch, cfg.epochs, cfg.arch_warmup)
            train_loader.sampler.set_pass(epoch)
            model.train()
            meter = Meter()
            desc = f"epoch {epoch + 1}/{cfg.epochs}"
            with run.epoch(epoch), Progress(len(train_loader), desc, enabled=cfg.progress and run.main) as bar:
                for step, batch in enumerate(train_loader):
                    train_batch = to_device(batch, run.device, cfg.channels_last)
                    val_batch = to_device(next(val_stream), run.device, cfg.channels_last)  # the val stream advances
                    with step_context(desc, step):  # even in the warm-up, so batches do not depend on its length
                        if update_arch:  # the α step on a validation batch (Eq. 7, first or second order)
                            meter.add_val(bilevel.arch_step(train_batch, val_batch, lr))
                        meter.add_train(*bilevel.weight_step(train_batch), len(train_batch[1]))  # the weight step
                    bar.update(loss=meter.train_loss, acc=meter.train_acc)
            scheduler.step()
            extra.update(method.after_epoch(model, ctx))  # ENAS trains its controller here
            genotype = derive(model, cfg, cost)  # α are identical on every rank, so is the genotype
            extra.update(method.epoch_metrics(model))
            if cost is not None:
                extra.update(cost.metrics(model, genotype))
            if wants_hessian(cfg, stopper, epoch):
                # + the α weight decay: RobustDARTS differentiates the gradient with it added (H + λI)
                extra["hessian_eigenvalue"] = hessian_eigenvalue(model, val_loader, run.device, reduce) \
                    + cfg.arch_weight_decay
            stop = check_early_stop(stopper, cells, epoch, cfg.epochs, genotype, extra)
            stop = broadcast_flag(bool(stop), run.env) and (stop or "rank 0 stopped early")
            if run.main:
                extra.update(space.epoch_metrics(genotype, cfg.dataset))
                records.append(epoch_record(epoch, lr, t0, meter, model, genotype, val_loader, run.device, extra))
                log_epoch(records[-1], cfg.epochs, genotype)
            run.end_epoch(records[-1] if run.main else {"epoch": epoch + 1}, {
                **checkpoint_identity(setup), "model": model.state_dict(), "w_opt": w_opt.state_dict(),
                "a_opt": a_opt.state_dict(), "scheduler": scheduler.state_dict(),
                "val_stream": val_stream.state_dict(), "early_stop": early_stop_state(stopper, cells, stop)},
                heatmaps={f"alpha/{g}": w for g, w in zip(model.alphas.groups, model.strengths())})
            if stop:
                stopped, genotype = stop, rolled_back(stopper, cells, genotype, epoch, cfg.epochs)
                break
        if not stopped:
            genotype = final_cell(setup, model, bilevel, train_loader, ctx, cost, genotype)
        if run.main:
            genotype.save(run.dir.file("genotype.json"))
        run.end_phase("selection")
        if run.main:
            log.info("final genotype written to %s", run.dir.file("genotype.json"))
            space.report(genotype, run.dir.path)
            records = run.dir.read_metrics()
        return SearchResult(genotype, run.dir.path, records, model, stopped)


# ---------------------------------------------------------------------------------------------------------
# the parts


def penalties(*terms):
    """The α-only terms of the α step (``--cost-target``'s penalty, ``--beta-decay``), summed; None for none."""
    fns = [t.penalty if hasattr(t, "penalty") else t for t in terms if t is not None]
    if not fns:
        return None

    def total(model):
        parts = [p for p in (f(model) for f in fns) if p is not None]
        return sum(parts) if parts else None

    return total


def derive(model, cfg, cost):
    """The cell α encodes now: the space's and method's rule, with ``--max-skip``; under ``--cost-target``, made to
    fit it (:meth:`darts.costs.SearchCost.derive`). A sampling method shows its own cell instead."""
    shown = model.method.current_genotype(model)
    if shown is not None:
        return shown
    genotype = model.genotype(cfg.max_skip)
    return cost.derive(model, genotype) if cost is not None else genotype


def final_cell(setup, model, bilevel, train_loader, ctx, cost, genotype):
    """The cell the finished search returns: DARTS-PT's choice under ``--selection pt``, else the method's final
    choice (a sampling method's best cell on the shared weights), else the last epoch's ``genotype``."""
    if setup.cfg.selection == "pt":
        log.info("DARTS-PT selection: the op of every edge, then each node's inputs, by the supernet's accuracy")
        select_by_perturbation(model, setup.space, setup.cfg, bilevel, train_loader, ctx)
        genotype = derive(model, setup.cfg, cost)
        log.info("final cell (DARTS-PT): %s", genotype)
        return genotype
    chosen = setup.method.final_genotype(model, ctx)
    if chosen is None:
        return genotype
    log.info("final cell (%s's choice on the shared weights): %s", setup.method.name, chosen)
    return chosen


def search_context(run, cfg, a_opt, train_loader, val_stream, val_loader, reduce) -> SearchContext:
    """What the methods' after-epoch and final hooks may read (:class:`darts.methods.base.SearchContext`)."""
    cache: list = []

    def train_batches(n: int) -> list:
        if len(cache) < n:  # the first n batches of a fixed pass, the same for every caller
            train_loader.sampler.set_pass(cfg.epochs)
            cache[:] = [b for _, b in zip(range(n), train_loader)]
        return cache[:n]

    return SearchContext(device=run.device, val_stream=val_stream, val_loader=val_loader, train_batches=train_batches,
                         reduce=reduce, to_device=lambda b: to_device(b, run.device, cfg.channels_last),
                         epochs=cfg.epochs, main=run.main, arch_optimizer=a_opt, save_phase=run.save_phase,
                         load_phase=run.load_phase)


def search_loaders(data: DataBundle, cfg, env):
    """The DARTS split of the training set: a loader over the first ``train_portion`` (for the weights), an endless
    stream over the rest (one validation batch per α step), and a fixed-order loader over it for evaluation."""
    train_idx, val_idx = search_split(len(data.train), cfg.train_portion)
    shard = dict(rank=env.rank, world_size=env.world_size)
    train_loader = make_loader(data.train, train_idx, cfg.batch_size, cfg.seed, cfg.num_workers, **shard)
    val_stream = BatchStream(make_loader(data.train, val_idx, cfg.batch_size, cfg.seed + 1, cfg.num_workers,
                                         **shard))
    val_loader = make_loader(data.train, val_idx, cfg.batch_size, 0, cfg.num_workers, shuffle=False)
    return train_loader, val_stream, val_loader


def optimizers(model, cfg):
    """SGD (cosine to ``lr_min``) for the weights and Adam for α, with the paper's (or the method's) settings."""
    w_opt = torch.optim.SGD(model.weight_parameters(), cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    a_opt = torch.optim.Adam(model.arch_parameters(), cfg.arch_lr, betas=(cfg.arch_beta1, cfg.arch_beta2),
                             weight_decay=cfg.arch_weight_decay, **model.method.arch_optimizer_options())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, cfg.epochs, eta_min=cfg.lr_min)
    return w_opt, a_opt, scheduler


def alpha_names(model) -> tuple[str, ...]:
    """The parameter names DistributedDataParallel must leave alone: α are all-reduced by the bilevel step."""
    return tuple(n for n, _ in model.named_parameters() if n.startswith("alphas."))


def checkpoint_identity(setup: SearchSetup) -> dict:
    """What a checkpoint must share with the run that resumes it: space, method, primitives and the network's
    size (a checkpoint copied from another run is refused)."""
    cfg = setup.cfg
    return {"method": cfg.method, "space": cfg.space, "primitives": list(cfg.primitives),
            "init_channels": cfg.init_channels,
            "space_options": to_dict(setup.space.options, setup.space.flag_prefix)}


class Meter:
    """Running means of one epoch: training loss and accuracy, and the validation loss the α steps saw."""

    def __init__(self):
        self.loss = self.val = 0.0
        self.correct = self.count = self.val_steps = 0

    def add_train(self, loss: float, correct: int, n: int) -> None:
        self.loss += loss * n
        self.correct += correct
        self.count += n

    def add_val(self, loss: float) -> None:
        self.val += loss
        self.val_steps += 1

    @property
    def train_loss(self) -> float:
        return self.loss / max(self.count, 1)

    @property
    def train_acc(self) -> float:
        return self.correct / max(self.count, 1)

    def stats(self) -> dict:
        return {"train_loss": self.train_loss, "train_acc": self.train_acc,
                "arch_val_loss": self.val / self.val_steps if self.val_steps else None}


class step_context:
    """A non-finite loss in a step names the epoch and the step."""

    def __init__(self, desc: str, step: int):
        self.where = f"{desc}, step {step + 1}"

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if kind is not None and issubclass(kind, NonFiniteLossError):
            raise NonFiniteLossError(f"{self.where}: {e}") from None
        return False


def parameter_free_count(genotype, cell: str = "normal") -> int:
    """Number of parameter-free ops (skip, pools; not ``none``) in a cell: the collapse indicator of DARTS.

    ``cell`` names the edge list (an NB201 genotype's one cell is also its ``normal``)."""
    return sum(get_op_spec(op).parameter_free and not get_op_spec(op).is_zero for op, _ in getattr(genotype, cell))


def epoch_record(epoch, lr, t0, meter, model, genotype, val_loader, device, extra) -> dict:
    """The ``metrics.jsonl`` record of an epoch (rank 0): losses, accuracy on the validation split, the collapse
    indicators, the method's and space's numbers, the op strengths of every cell type, and the genotype."""
    val_loss, val_acc = evaluate(model, val_loader, device)
    strengths = dict(zip(model.alphas.groups, model.strengths()))
    return {"epoch": epoch + 1, "lr": lr, **meter.stats(), "val_loss": val_loss, "val_acc": val_acc,
            "param_free_normal": parameter_free_count(genotype), "skip_normal": count_skips(genotype),
            "epoch_time_s": round(time.time() - t0, 3), **extra,
            **{f"alpha_{g}": w.cpu().tolist() for g, w in strengths.items()}, "genotype": genotype.to_dict()}


def log_epoch(record: dict, epochs: int, genotype) -> None:
    shown = "".join(f"  {k} {v:.4g}" for k, v in record.items() if k in ("tau", "epsilon", "aux_skip_beta", "stage",
                                                                          "hessian_eigenvalue", "nb201_test_acc", "path_val_acc",
                                                                          "nb201_cifar10_test", "cost_predicted",
                                                                          "cost_measured")
                    or k.startswith("above_threshold"))
    log.info("epoch %d/%d  lr %.5f  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  param-free ops %d%s  %.1fs",
             record["epoch"], epochs, record["lr"], record["train_loss"], 100 * record["train_acc"],
             record["val_loss"], 100 * record["val_acc"], record["param_free_normal"], shown, record["epoch_time_s"])
    log.info("genotype = %s", genotype)


def log_start(run, setup, data, model, impl, start) -> None:
    cfg, method, space = setup.cfg, setup.method, setup.space
    train_idx, val_idx = search_split(len(data.train), cfg.train_portion)
    n_train, n_val = len(train_idx), len(val_idx)
    log.info("search on %s (%d train / %d val images), %d epochs, %s order%s, device %s x %d, kernels %s -> %s",
             cfg.dataset, n_train, n_val, cfg.epochs, cfg.order, f" ({cfg.hvp} HVP)" if cfg.order == "second" else "",
             run.device, run.env.world_size, cfg.kernels, impl)
    if impl == "fused_cpu" and run.device.type == "cpu":
        from kernels import cpu_ext  # builds them on the first run on this machine (about 10 s)

        cpu_ext.load()
        log.info("%s", cpu_ext.status())
    log.info("method %s (%s); space %s", method.describe(), method.paper, space.name)
    log.info("%s; primitives %s; run dir %s", space.describe(model), ",".join(cfg.primitives), run.dir.path)
    if cfg.arch_warmup:
        log.info("α is frozen for the first %d epoch(s) (weight steps only)", cfg.arch_warmup)
    if start:
        log.info("resumed from %s at epoch %d", run.dir.file("checkpoint.pt"), start)


# -- early stopping -----------------------------------------------------------------------------------------


def wants_hessian(cfg, stopper, epoch: int) -> bool:
    """RobustDARTS computes the eigenvalue after 0-based epochs 0, K, 2K, ... and the last."""
    every = cfg.hessian_every
    return bool(every) and (epoch % every == 0 or epoch + 1 == cfg.epochs)


def hessian_eigenvalue(model, loader, device, reduce, batches: int = 1) -> float:
    """The largest (signed) eigenvalue of ∇²_α L_val on the first ``batches`` validation batches (RobustDARTS's
    ``max(eigvals(H))``), the same batches every time, so that its changes come from the weights and α, not from
    the data (RobustDARTS takes the epoch's last search batch)."""
    data = []
    for x, y in loader:
        data.append((x.to(device), y.to(device)))
        if len(data) == batches:
            break
    model.train()
    return largest_hessian_eigenvalue(model, nn.CrossEntropyLoss(), data, reduce=reduce)


def check_early_stop(stopper, cells, epoch, epochs, genotype, extra) -> str | None:
    """Feed the epoch to the rule; its reason if it fires. RobustDARTS's rule is not applied at the last epoch
    (the run ends there anyway, with its own cell)."""
    if stopper is None:
        return None
    if cells is not None:  # the rule may return an earlier epoch's cell
        cells[epoch + 1] = genotype.to_dict()
    if "hessian_eigenvalue" in stopper.needs and epoch + 1 == epochs:
        return None
    return stopper.reason if stopper.observe(epoch + 1, genotype, extra) else None


def rolled_back(stopper, cells, genotype, epoch, epochs):
    """The cell a stopped search returns: the rule's earlier epoch's (RobustDARTS), else ``genotype``."""
    log.info("early stop after epoch %d/%d: %s", epoch + 1, epochs, stopper.reason if stopper else "")
    back = getattr(stopper, "stop_epoch", None)
    if back is not None and cells and back in cells:
        genotype = genotype_from_dict(cells[back])[1]
        log.info("the final cell is the one of epoch %d, before the eigenvalue grew: %s", back, genotype)
    return genotype


def early_stop_state(stopper, cells, stop) -> dict:
    return {"stopped": stop or None, "genotypes": cells,
            "rule": stopper.state_dict() if stopper is not None else None}


def restore_early_stop(stopper, saved: dict | None):
    """``(stopped reason or None, cells by epoch or None)`` from a checkpoint's early-stop state, which is loaded
    into ``stopper``."""
    cells = {} if stopper is not None and "hessian_eigenvalue" in stopper.needs else None
    if not saved:
        return None, cells
    if stopper is not None and saved.get("rule") is not None:
        stopper.load_state_dict(saved["rule"])
    if saved.get("genotypes") is not None and cells is not None:
        cells = {int(k): v for k, v in saved["genotypes"].items()}
    if saved.get("stopped"):
        log.info("this run had stopped early: %s", saved["stopped"])
    return saved.get("stopped"), cells
