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
from .collapse import HessianEarlyStop, SkipEarlyStop, count_skips, largest_hessian_eigenvalue
from .config import SearchConfig, apply_presets, config_from_dict, config_to_dict
from .data import BatchStream, load_data, make_loader, search_split
from .distributed import all_reduce_mean, barrier, broadcast_flag, init_distributed, shutdown, wrap_ddp
from .engine import evaluate, resolve_device, search_epoch
from .errors import CheckpointError, ConfigError, DartsError, NonFiniteLossError
from .genotype import Genotype
from .ops import check_primitives, get_op_spec, load_ops_module
from .rundir import CHECKPOINT, RunDir
from .spaces import build_search_model

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


def parameter_free_count(genotype, cell: str = "normal") -> int:
    """Number of parameter-free ops (skip, pools; not ``none``) in a cell: the collapse indicator of DARTS.

    ``cell`` names the edge list (an NB201 genotype's one cell is also its ``normal``)."""
    return sum(get_op_spec(op).parameter_free and not get_op_spec(op).is_zero for op, _ in getattr(genotype, cell))


def build_method(cfg: SearchConfig):
    """The :class:`darts.methods.SearchMethod` of ``cfg.method`` with its options from the config."""
    from .methods import get_method

    options = {
        "pcdarts": dict(k=cfg.pc_k),
        "gdas": dict(tau_max=cfg.gdas_tau_max, tau_min=cfg.gdas_tau_min, cell_rule=cfg.gdas_cell_rule,
                     unsampled_terms=cfg.gdas_unsampled_terms),
        "fairdarts": dict(zero_one_weight=cfg.fair_zero_one_weight, cell_rule=cfg.fair_cell_rule,
                          threshold=cfg.fair_threshold),
        "drnas": dict(reg=cfg.drnas_reg, reg_scale=cfg.drnas_reg_scale, k=cfg.drnas_k, keep_ops=cfg.drnas_keep_ops),
        "darts-": dict(beta0=cfg.dartsminus_beta0, decay=cfg.dartsminus_decay),
        "sdarts-rs": dict(epsilon=cfg.sdarts_epsilon, epsilon_min=cfg.sdarts_epsilon_min),
    }.get(cfg.method, {})
    # options still None take the method's own default
    return get_method(cfg.method, **{k: v for k, v in options.items() if v is not None})


def check_requirements(cfg: SearchConfig, primitives) -> None:
    """Options that need particular ops in the search space; a clear error instead of a silent no-op."""
    from .spaces import check_space_primitives

    check_space_primitives(cfg.space, primitives)
    if "skip_connect" not in primitives:
        if cfg.max_skip is not None:
            raise ConfigError("--max-skip limits skip_connect, which is not in --primitives")
        if cfg.early_stop == "skip":
            raise ConfigError("--early-stop skip counts skip_connect, which is not in --primitives")
    k, flag = {"pcdarts": (cfg.pc_k, "--pc-k"), "drnas": (cfg.drnas_k, "--drnas-k")}.get(cfg.method, (None, None))
    if k:
        channels = [cfg.init_channels * m for m in (1, 2, 4)]
        bad = [c for c in channels if c % k]
        if bad:
            raise ConfigError(f"--method {cfg.method} needs every cell's channels ({', '.join(map(str, channels))}) "
                              f"divisible by {flag} {k}")


def run_search(cfg: SearchConfig, given: set[str] = frozenset()) -> tuple[RunDir, Genotype]:
    """Run (or resume) a search; returns the run directory and the final genotype.

    Under ``torchrun`` every rank runs this; ``--batch-size`` is per rank, only rank 0 writes the run directory.
    """
    if cfg.resume:
        cfg, rd = resolve_resume(cfg, set(given), SearchConfig)
    else:
        rd = None
        if cfg.ops_module:  # before the presets: it may register a --method too
            load_ops_module(cfg.ops_module)
        apply_presets(cfg).validate()
        out = cfg.out or time.strftime(f"runs/search-{cfg.dataset}-%Y%m%d-%H%M%S")
        RunDir.check_new(out)
    if cfg.ops_module and rd is not None:
        load_ops_module(cfg.ops_module)
    primitives = check_primitives(cfg.primitives)
    check_requirements(cfg, primitives)
    if cfg.early_stop == "hessian" and not cfg.hessian_every:
        cfg.hessian_every = 2  # RobustDARTS's scripts: --report_freq_hessian 2
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

    method = build_method(cfg)
    model = build_search_model(cfg.space, C=cfg.init_channels, num_classes=data.num_classes, layers=cfg.layers,
                               nodes=cfg.nodes, stem_multiplier=cfg.stem_multiplier, cells_per_stage=cfg.nb201_cells,
                               primitives=primitives, in_channels=data.in_channels, kernels=cfg.kernels,
                               method=method).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    impl = model.set_kernels(cfg.kernels, device)
    w_opt = torch.optim.SGD(model.weight_parameters(), cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    a_opt = torch.optim.Adam(model.arch_parameters(), cfg.arch_lr, betas=(cfg.arch_beta1, cfg.arch_beta2),
                             weight_decay=cfg.arch_weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, cfg.epochs, eta_min=cfg.lr_min)
    bilevel = BilevelOptimizer(model, nn.CrossEntropyLoss(), w_opt, a_opt, cfg.order, cfg.hvp, cfg.grad_clip,
                               reduce=lambda ts: all_reduce_mean(ts, env),
                               train_module=wrap_ddp(model, env, ignore=tuple(
                                   n for n, _ in model.named_parameters() if n.startswith("alphas.")),
                                   find_unused=not method.uses_all_weights),
                               amp_dtype=torch.bfloat16 if cfg.amp else None)

    stoppers = make_stoppers(cfg)
    benchmark = None
    if cfg.space == "nb201" and main:
        from .spaces.nb201_bench import open_benchmark

        benchmark = open_benchmark(cfg.nb201_file)
    start_epoch = 0
    if rd is None:
        barrier(env)  # every rank has checked --out before rank 0 creates it
        rd = RunDir.create(out) if main else RunDir(out)
        if main:
            rd.write_config(config_to_dict(cfg), kind="search", primitives=list(primitives),
                            world_size=env.world_size)
    else:
        start_epoch = _restore(rd, cfg, model, w_opt, a_opt, scheduler, val_stream, stoppers, truncate=main)
    if main:
        rd.attach_log_file()
    n_weights = sum(p.numel() for p in model.weight_parameters())
    log.info("search on %s (%d train / %d val images), %d epochs, %s order%s, device %s x %d, kernels %s -> %s",
             cfg.dataset, len(train_idx), len(val_idx), cfg.epochs, cfg.order,
             f" ({cfg.hvp} HVP)" if cfg.order == "second" else "", device, env.world_size, cfg.kernels, impl)
    if impl == "fused_cpu" and torch.device(device).type == "cpu":
        from kernels import cpu_ext  # builds them on the first run on this machine (about 10 s)

        cpu_ext.load()
        log.info("%s", cpu_ext.status())
    log.info("method %s (%s); space %s", method.describe(), method.paper, cfg.space)
    if cfg.space == "nb201":
        log.info("supernet: NAS-Bench-201, %d cells per stage, %d channels, %d weights; primitives %s; run dir %s",
                 cfg.nb201_cells, cfg.init_channels, n_weights, ",".join(primitives), rd.path)
    else:
        log.info("supernet: %d cells, %d channels, %d nodes, %d weights; primitives %s; run dir %s",
                 cfg.layers, cfg.init_channels, cfg.nodes, n_weights, ",".join(primitives), rd.path)
    if cfg.arch_warmup:
        log.info("α is frozen for the first %d epoch(s) (weight steps only)", cfg.arch_warmup)
    if start_epoch:
        log.info("resumed from %s at epoch %d", rd.file(CHECKPOINT), start_epoch)

    genotype = model.genotype(cfg.max_skip)
    stopped = stoppers.get("stopped")
    if stopped:
        log.info("this run had stopped early at epoch %d: %s", start_epoch, stopped)
    for epoch in range(start_epoch, cfg.epochs if not stopped else start_epoch):
        t0 = time.time()
        lr = scheduler.get_last_lr()[0]
        train_loader.sampler.set_pass(epoch)
        schedule = method.start_epoch(model, epoch, cfg.epochs)
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        try:
            stats = search_epoch(bilevel, train_loader, val_stream, lr, device, desc, cfg.progress and main,
                                 cfg.channels_last, update_arch=method.updates_arch(epoch, cfg.epochs, cfg.arch_warmup))
        except NonFiniteLossError as e:
            kept = f"the last good checkpoint (epoch {epoch}) is kept in {rd.path}" if epoch else \
                "no epoch had completed, so there is no checkpoint"
            raise NonFiniteLossError(f"{e}; {kept}. Try a lower --lr or --arch-lr in a new run.") from None
        scheduler.step()
        genotype = model.genotype(cfg.max_skip)  # α are identical on every rank, so is the genotype
        extra = {**schedule, **method.epoch_metrics(model)}
        last = epoch + 1 == cfg.epochs
        if cfg.hessian_every and (epoch % cfg.hessian_every == 0 or last):  # RobustDARTS: epochs 0, K, 2K, ... and the last
            model.train()
            # + the α weight decay: RobustDARTS differentiates the gradient with it added (the Hessian of the
            # regularised validation loss, H + λI)
            extra["hessian_eigenvalue"] = _hessian_eigenvalue(model, val_eval_loader, device,
                                                              lambda ts: all_reduce_mean(ts, env)) + cfg.arch_weight_decay
        if "genotypes" in stoppers:  # RobustDARTS returns the cell of the epoch the rule looks back to
            stoppers["genotypes"][epoch + 1] = genotype.to_dict()
        stop = _check_stop(stoppers, epoch, genotype, extra, last)
        stop = broadcast_flag(bool(stop), env) and (stop or "rank 0 stopped early")
        if benchmark is not None:
            acc = benchmark.test_accuracy(genotype, cfg.dataset)
            if acc is not None:
                extra["nb201_test_acc"] = acc
        if main:
            _end_of_epoch(rd, cfg, epoch, lr, t0, stats, model, genotype, val_eval_loader, device, extra, {
                "kind": "search", "epoch": epoch + 1, "primitives": list(primitives), "nodes": cfg.nodes,
                "layers": cfg.layers, "init_channels": cfg.init_channels, "method": cfg.method, "space": cfg.space,
                "model": model.state_dict(), "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(), "val_stream": val_stream.state_dict(),
                "early_stop": _stopper_state(stoppers, stop),
            })
        barrier(env)
        if stop:
            log.info("early stop after epoch %d/%d: %s", epoch + 1, cfg.epochs, stop)
            back = getattr(stoppers.get("hessian"), "stop_epoch", None)
            if back is not None and back in stoppers["genotypes"]:
                genotype = type(genotype).from_dict(stoppers["genotypes"][back])
                log.info("the final cell is the one of epoch %d, before the eigenvalue grew: %s", back, genotype)
            break
    if main:
        genotype.save(rd.file("genotype.json"))
        rd.close()
        log.info("final genotype written to %s", rd.file("genotype.json"))
        if cfg.space == "darts":
            report_cell(genotype, rd)
    barrier(env)
    shutdown(env)
    return rd, genotype


def _end_of_epoch(rd, cfg, epoch, lr, t0, stats, model, genotype, val_loader, device, extra, checkpoint) -> None:
    """Rank 0, after each epoch: evaluate on the validation split, log metrics and α, save the checkpoint."""
    val_loss, val_acc = evaluate(model, val_loader, device)
    strengths = dict(zip(model.alphas.groups, model.strengths()))
    record = {
        "epoch": epoch + 1, "lr": lr, **stats, "val_loss": val_loss, "val_acc": val_acc,
        "param_free_normal": parameter_free_count(genotype), "skip_normal": count_skips(genotype),
        "epoch_time_s": round(time.time() - t0, 3), **extra,
        **{f"alpha_{g}": w.cpu().tolist() for g, w in strengths.items()}, "genotype": genotype.to_dict(),
    }
    rd.append_metrics(record)
    for g, w in strengths.items():
        rd.add_heatmap(f"alpha/{g}", w, epoch + 1)
    save_checkpoint(checkpoint, rd.file(CHECKPOINT))
    shown = "".join(f"  {k} {v:.4g}" for k, v in extra.items())
    log.info("epoch %d/%d  lr %.5f  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  param-free ops %d%s  %.1fs",
             epoch + 1, cfg.epochs, lr, stats["train_loss"], 100 * stats["train_acc"], val_loss, 100 * val_acc,
             record["param_free_normal"], shown, record["epoch_time_s"])
    log.info("genotype = %s", genotype)


def make_stoppers(cfg: SearchConfig) -> dict:
    """The early-stop rules of ``--early-stop`` (:mod:`darts.collapse`), by name."""
    if cfg.early_stop == "skip":
        return {"skip": SkipEarlyStop(patience=cfg.skip_patience)}
    if cfg.early_stop == "hessian":
        return {"hessian": HessianEarlyStop(ratio=cfg.hessian_ratio, lag=cfg.hessian_lag, window=cfg.hessian_window,
                                            start_epoch=cfg.hessian_start), "genotypes": {}}
    return {}


def _check_stop(stoppers: dict, epoch: int, genotype, extra: dict, last: bool = False) -> str | None:
    if "skip" in stoppers and stoppers["skip"].update(genotype):
        return stoppers["skip"].reason
    # RobustDARTS applies its rule before the last epoch only (the run ends there anyway, with its own cell)
    if "hessian" in stoppers and "hessian_eigenvalue" in extra and not last:
        if stoppers["hessian"].update(epoch + 1, extra["hessian_eigenvalue"]):
            return stoppers["hessian"].reason
    return None


def _stopper_state(stoppers: dict, stop) -> dict:
    state = {k: v.state_dict() for k, v in stoppers.items() if k in ("skip", "hessian")}
    return {"stopped": stop or None, "genotypes": stoppers.get("genotypes"), **state}


def _hessian_eigenvalue(model, loader, device, reduce, batches: int = 1) -> float:
    """The largest (signed) eigenvalue of ∇²_α L_val on the first ``batches`` validation batches (RobustDARTS's
    ``max(eigvals(H))``), the same batches every time, so that its changes come from the weights and α, not from
    the data (RobustDARTS takes the epoch's last search batch)."""
    data = []
    for x, y in loader:
        data.append((x.to(device), y.to(device)))
        if len(data) == batches:
            break
    return largest_hessian_eigenvalue(model, nn.CrossEntropyLoss(), data, reduce=reduce)


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


def _restore(rd: RunDir, cfg, model, w_opt, a_opt, scheduler, val_stream, stoppers, truncate: bool = True) -> int:
    """Load RUN_DIR/checkpoint.pt into the freshly built objects; returns the number of completed epochs."""
    path = rd.file(CHECKPOINT)
    if not os.path.exists(path):
        log.warning("%s has no checkpoint yet (killed during the first epoch); starting from epoch 0", rd.path)
        return 0
    state = load_checkpoint(path, kind="search")
    expect = {"primitives": list(model.primitives), "nodes": cfg.nodes, "layers": cfg.layers,
              "init_channels": cfg.init_channels, "method": cfg.method, "space": cfg.space}
    for k, v in expect.items():
        if state.get(k, "darts" if k in ("method", "space") else None) != v:
            raise CheckpointError(f"{path} was written by a run with {k} = {state.get(k)!r}, but this run has "
                                  f"{k} = {v!r}: it belongs to another search space or method")
    with restoring(path):
        model.load_state_dict(state["model"])
        w_opt.load_state_dict(state["w_opt"])
        a_opt.load_state_dict(state["a_opt"])
        scheduler.load_state_dict(state["scheduler"])
        val_stream.load_state_dict(state["val_stream"])
        set_rng_state(state["rng"])
        saved_stop = state.get("early_stop") or {}
        for k, v in stoppers.items():
            if k in saved_stop and k in ("skip", "hessian"):
                v.load_state_dict(saved_stop[k])
        if saved_stop.get("genotypes") is not None:
            stoppers["genotypes"] = {int(k): v for k, v in saved_stop["genotypes"].items()}
        if saved_stop.get("stopped"):
            stoppers["stopped"] = saved_stop["stopped"]
    if truncate:
        rd.truncate_metrics(state["epoch"])
    return int(state["epoch"])
