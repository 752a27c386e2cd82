"""A whole search run: set up from a :class:`SearchConfig`, train the supernet, write the run directory."""
from __future__ import annotations

import json
import logging
import os
import time

import torch
import torch.nn as nn

from .bilevel import BilevelOptimizer
from .checkpoint import load_checkpoint, restoring, rng_state, save_checkpoint, set_rng_state
from .config import SearchConfig, apply_presets, config_from_dict, config_to_dict
from .data import BatchStream, load_data, make_loader, search_split
from .distributed import all_reduce_mean, barrier, init_distributed, shutdown, wrap_ddp
from .engine import evaluate, resolve_device, search_epoch
from .errors import CheckpointError, ConfigError, DartsError, NonFiniteLossError
from .genotype import Genotype
from .ops import check_primitives, get_op_spec, load_ops_module
from .rundir import CHECKPOINT, RunDir
from .search import Supernet

log = logging.getLogger(__name__)

# Flags that may differ when resuming: they change where and how fast the run goes, not what it computes.
RUNTIME_FIELDS = {"resume", "device", "kernels", "num_workers", "progress", "download", "data"}


def resolve_resume(cfg, given: set[str], cls):
    """For ``--resume RUN_DIR``: the saved config, with only runtime flags taken from the command line.

    A flag given on the command line that would change the saved run is an error naming it."""
    rd = RunDir.open_existing(cfg.resume)
    saved = config_from_dict(cls, rd.read_config())
    conflicts = [f"--{k.replace('_', '-')} ({getattr(cfg, k)!r} vs saved {getattr(saved, k)!r})"
                 for k in sorted(given - RUNTIME_FIELDS) if getattr(cfg, k) != getattr(saved, k)]
    if conflicts:
        raise ConfigError(f"cannot change a resumed run's settings: {', '.join(conflicts)}")
    for k in given & RUNTIME_FIELDS:
        setattr(saved, k, getattr(cfg, k))
    saved.resume = cfg.resume
    return saved, rd


def parameter_free_count(genotype: Genotype, cell: str = "normal") -> int:
    """Number of parameter-free ops (skip, pools) in a cell: the collapse indicator of DARTS."""
    return sum(get_op_spec(op).parameter_free for op, _ in getattr(genotype, cell))


def run_search(cfg: SearchConfig, given: set[str] = frozenset()) -> tuple[RunDir, Genotype]:
    """Run (or resume) a search; returns the run directory and the final genotype.

    Under ``torchrun`` every rank runs this; ``--batch-size`` is per rank, only rank 0 writes the run directory.
    """
    if cfg.resume:
        cfg, rd = resolve_resume(cfg, set(given), SearchConfig)
    else:
        rd = None
        apply_presets(cfg).validate()
        out = cfg.out or time.strftime(f"runs/search-{cfg.dataset}-%Y%m%d-%H%M%S")
        RunDir.check_new(out)
    if cfg.ops_module:
        load_ops_module(cfg.ops_module)
    primitives = check_primitives(cfg.primitives)
    env = init_distributed(resolve_device(cfg.device))
    device, main = env.device, env.is_main

    torch.manual_seed(cfg.seed)
    data = load_data(cfg.dataset, cfg.data, cfg.download, cfg.image_size, augment=cfg.dataset != "digits")
    train_idx, val_idx = search_split(len(data.train), cfg.train_portion)
    shard = dict(rank=env.rank, world_size=env.world_size)
    train_loader = make_loader(data.train, train_idx, cfg.batch_size, cfg.seed, cfg.num_workers, **shard)
    val_stream = BatchStream(make_loader(data.train, val_idx, cfg.batch_size, cfg.seed + 1, cfg.num_workers,
                                         **shard))
    val_eval_loader = make_loader(data.train, val_idx, cfg.batch_size, 0, cfg.num_workers, shuffle=False)

    model = Supernet(cfg.init_channels, data.num_classes, cfg.layers, primitives, steps=cfg.nodes,
                     multiplier=cfg.nodes, stem_multiplier=cfg.stem_multiplier, in_channels=data.in_channels,
                     kernels=cfg.kernels).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    impl = model.set_kernels(cfg.kernels, device)
    w_opt = torch.optim.SGD(model.weight_parameters(), cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay)
    a_opt = torch.optim.Adam(model.arch_parameters(), cfg.arch_lr, betas=(cfg.arch_beta1, cfg.arch_beta2),
                             weight_decay=cfg.arch_weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, cfg.epochs, eta_min=cfg.lr_min)
    bilevel = BilevelOptimizer(model, nn.CrossEntropyLoss(), w_opt, a_opt, cfg.order, cfg.hvp, cfg.grad_clip,
                               reduce=lambda ts: all_reduce_mean(ts, env),
                               train_module=wrap_ddp(model, env, ignore=("alphas.normal", "alphas.reduce")),
                               amp_dtype=torch.bfloat16 if cfg.amp else None)

    start_epoch = 0
    if rd is None:
        barrier(env)  # every rank has checked --out before rank 0 creates it
        rd = RunDir.create(out) if main else RunDir(out)
        if main:
            rd.write_config(config_to_dict(cfg), kind="search", primitives=list(primitives),
                            world_size=env.world_size)
    else:
        start_epoch = _restore(rd, cfg, model, w_opt, a_opt, scheduler, val_stream, truncate=main)
    if main:
        rd.attach_log_file()
    n_weights = sum(p.numel() for p in model.weight_parameters())
    log.info("search on %s (%d train / %d val images), %d epochs, %s order%s, device %s x %d, kernels %s -> %s",
             cfg.dataset, len(train_idx), len(val_idx), cfg.epochs, cfg.order,
             f" ({cfg.hvp} HVP)" if cfg.order == "second" else "", device, env.world_size, cfg.kernels, impl)
    log.info("supernet: %d cells, %d channels, %d nodes, %d weights; primitives %s; run dir %s",
             cfg.layers, cfg.init_channels, cfg.nodes, n_weights, ",".join(primitives), rd.path)
    if start_epoch:
        log.info("resumed from %s at epoch %d", rd.file(CHECKPOINT), start_epoch)

    genotype = model.genotype(cfg.max_skip)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        lr = scheduler.get_last_lr()[0]
        train_loader.sampler.set_pass(epoch)
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        try:
            stats = search_epoch(bilevel, train_loader, val_stream, lr, device, desc, cfg.progress and main,
                                 cfg.channels_last)
        except NonFiniteLossError as e:
            kept = f"the last good checkpoint (epoch {epoch}) is kept in {rd.path}" if epoch else \
                "no epoch had completed, so there is no checkpoint"
            raise NonFiniteLossError(f"{e}; {kept}. Try a lower --lr or --arch-lr in a new run.") from None
        scheduler.step()
        genotype = model.genotype(cfg.max_skip)  # α are identical on every rank, so is the genotype
        if main:
            _end_of_epoch(rd, cfg, epoch, lr, t0, stats, model, genotype, val_eval_loader, device, {
                "kind": "search", "epoch": epoch + 1, "primitives": list(primitives), "nodes": cfg.nodes,
                "layers": cfg.layers, "init_channels": cfg.init_channels, "method": "darts",
                "model": model.state_dict(), "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(), "val_stream": val_stream.state_dict(),
            })
        barrier(env)
    if main:
        genotype.save(rd.file("genotype.json"))
        rd.close()
        log.info("final genotype written to %s", rd.file("genotype.json"))
        report_cell(genotype, rd)
    barrier(env)
    shutdown(env)
    return rd, genotype


def _end_of_epoch(rd, cfg, epoch, lr, t0, stats, model, genotype, val_loader, device, checkpoint) -> None:
    """Rank 0, after each epoch: evaluate on the validation split, log metrics and α, save the checkpoint."""
    val_loss, val_acc = evaluate(model, val_loader, device)
    with torch.no_grad():
        wn, wr = model.edge_weights()
    record = {
        "epoch": epoch + 1, "lr": lr, **stats, "val_loss": val_loss, "val_acc": val_acc,
        "param_free_normal": parameter_free_count(genotype), "epoch_time_s": round(time.time() - t0, 3),
        "alpha_normal": wn.cpu().tolist(), "alpha_reduce": wr.cpu().tolist(), "genotype": genotype.to_dict(),
    }
    rd.append_metrics(record)
    rd.add_heatmap("alpha/normal", wn, epoch + 1)
    rd.add_heatmap("alpha/reduce", wr, epoch + 1)
    save_checkpoint(checkpoint, rd.file(CHECKPOINT))
    log.info("epoch %d/%d  lr %.5f  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  param-free ops %d  %.1fs",
             epoch + 1, cfg.epochs, lr, stats["train_loss"], 100 * stats["train_acc"], val_loss, 100 * val_acc,
             record["param_free_normal"], record["epoch_time_s"])
    log.info("genotype = %s", genotype)


def report_cell(genotype: Genotype, rd: RunDir) -> dict:
    """Compare the cell with DARTS_V2 in the CIFAR setting (36 channels, 20 cells, parameters without the
    auxiliary head, multiply-adds at 32x32), save it as ``comparison.json``, and draw both cells."""
    from .checkpoint import atomic_write_text
    from .counting import count_macs
    from .final import NetworkCIFAR, count_parameters
    from .zoo import get_genotype

    rows = {}
    for name, g in (("this search", genotype), ("DARTS_V2", get_genotype("DARTS_V2"))):
        with torch.device("meta"):  # shapes only: counting needs no arithmetic and no memory
            net = NetworkCIFAR(36, 10, 20, False, g)
        rows[name] = {"params": count_parameters(net), "macs": count_macs(net, (3, 32, 32), device="meta")}
    ours, ref = rows["this search"], rows["DARTS_V2"]
    log.info("CIFAR setting (36 channels, 20 cells): this cell %.2fM params, %.0fM MACs; DARTS_V2 %.2fM params, "
             "%.0fM MACs", ours["params"] / 1e6, ours["macs"] / 1e6, ref["params"] / 1e6, ref["macs"] / 1e6)
    atomic_write_text(rd.file("comparison.json"), json.dumps({"setting": "cifar", **rows}, indent=1) + "\n")
    try:
        from .plot import plot_genotype

        paths = plot_genotype(genotype, rd.path)
        log.info("cell drawings: %s", ", ".join(os.path.basename(p) for p in paths))
    except DartsError as e:  # no graphviz and no matplotlib: the search itself succeeded
        log.warning("cell drawing skipped: %s", e)
    return rows


def _restore(rd: RunDir, cfg, model, w_opt, a_opt, scheduler, val_stream, truncate: bool = True) -> int:
    """Load RUN_DIR/checkpoint.pt into the freshly built objects; returns the number of completed epochs."""
    path = rd.file(CHECKPOINT)
    if not os.path.exists(path):
        log.warning("%s has no checkpoint yet (killed during the first epoch); starting from epoch 0", rd.path)
        return 0
    state = load_checkpoint(path, kind="search")
    expect = {"primitives": list(model.primitives), "nodes": cfg.nodes, "layers": cfg.layers,
              "init_channels": cfg.init_channels, "method": "darts"}
    for k, v in expect.items():
        if state.get(k) != v:
            raise CheckpointError(f"{path} was written by a run with {k} = {state.get(k)!r}, but this run has "
                                  f"{k} = {v!r}: it belongs to another search space or method")
    with restoring(path):
        model.load_state_dict(state["model"])
        w_opt.load_state_dict(state["w_opt"])
        a_opt.load_state_dict(state["a_opt"])
        scheduler.load_state_dict(state["scheduler"])
        val_stream.load_state_dict(state["val_stream"])
        set_rng_state(state["rng"])
    if truncate:
        rd.truncate_metrics(state["epoch"])
    return int(state["epoch"])
