"""A whole retraining run: build NetworkCIFAR/NetworkImageNet from a genotype and train it from scratch."""
from __future__ import annotations

import logging
import os
import time

import torch
import torch.nn as nn

from .checkpoint import load_checkpoint, restoring, rng_state, save_checkpoint, set_rng_state
from .config import FinalConfig, apply_presets, config_to_dict
from .data import load_data, make_loader
from .distributed import barrier, init_distributed, shutdown, wrap_ddp
from .engine import evaluate, resolve_device, train_epoch
from .errors import CheckpointError, ConfigError, NonFiniteLossError
from .final import NetworkCIFAR, NetworkImageNet, count_parameters
from .genotype import Genotype, load_genotype
from .ops import load_ops_module
from .rundir import CHECKPOINT, RunDir
from .search_run import resolve_resume

log = logging.getLogger(__name__)


def resolve_genotype(cfg: FinalConfig) -> tuple[Genotype, str]:
    """The genotype to train and a short name for it, from ``--genotype FILE`` or ``--arch NAME``."""
    if cfg.genotype:
        return load_genotype(cfg.genotype), os.path.basename(os.path.dirname(os.path.abspath(cfg.genotype)))
    from .zoo import get_genotype

    return get_genotype(cfg.arch), cfg.arch


def build_network(cfg: FinalConfig, genotype: Genotype, num_classes: int, in_channels: int,
                  image_size: int) -> nn.Module:
    cls = NetworkImageNet if cfg.imagenet_layout else NetworkCIFAR
    # The auxiliary head pools 5x5 windows of the maps after the second reduction (image/4, or image/32 for
    # the ImageNet layout), as in the reference code.
    aux_size = image_size // (32 if cfg.imagenet_layout else 4)
    if cfg.auxiliary and aux_size < 5:
        raise ConfigError(f"--auxiliary needs at least 5x5 feature maps at the head, but {image_size}x{image_size}"
                          f" images give {aux_size}x{aux_size}; use --no-auxiliary")
    return cls(cfg.init_channels, num_classes, cfg.layers, cfg.auxiliary, genotype, in_channels=in_channels)


def run_final(cfg: FinalConfig, given: set[str] = frozenset()) -> tuple[RunDir, dict]:
    """Train (or resume) an evaluation network; returns the run directory and the last metrics record."""
    if cfg.resume:
        cfg, rd = resolve_resume(cfg, set(given), FinalConfig)
    else:
        rd = None
        apply_presets(cfg).validate()
    if cfg.ops_module:
        load_ops_module(cfg.ops_module)
    genotype, name = resolve_genotype(cfg)
    if rd is None:
        out = cfg.out or time.strftime(f"runs/final-{name}-%Y%m%d-%H%M%S")
        RunDir.check_new(out)
    env = init_distributed(resolve_device(cfg.device))
    device, main = env.device, env.is_main

    torch.manual_seed(cfg.seed)
    data = load_data(cfg.dataset, cfg.data, cfg.download, cfg.image_size, cfg.imagenet_layout, augment=True,
                     cutout=cfg.cutout_length if cfg.cutout else 0)
    train_loader = make_loader(data.train, range(len(data.train)), cfg.batch_size, cfg.seed, cfg.num_workers,
                               rank=env.rank, world_size=env.world_size)
    test_loader = None
    if data.test is not None:
        test_loader = make_loader(data.test, range(len(data.test)), min(cfg.batch_size, len(data.test)), 0,
                                  cfg.num_workers, shuffle=False)
    model = build_network(cfg, genotype, data.num_classes, data.in_channels, data.image_size).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = count_parameters(model)
    optimizer = torch.optim.SGD(model.parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs)
    else:  # the DARTS ImageNet schedule: x0.97 every epoch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.97)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    start_epoch = 0
    if rd is None:
        barrier(env)  # every rank has checked --out before rank 0 creates it
        rd = RunDir.create(out) if main else RunDir(out)
        if main:
            rd.write_config(config_to_dict(cfg), kind="final", genotype=genotype.to_dict(), params=params,
                            world_size=env.world_size)
            genotype.save(rd.file("genotype.json"))
    else:
        start_epoch = _restore(rd, genotype, model, optimizer, scheduler, truncate=main)
    if main:
        rd.attach_log_file()
    log.info("retraining %s on %s: %s, %d cells, %d channels, %d parameters (auxiliary head excluded), "
             "device %s x %d", name, cfg.dataset, type(model).__name__, cfg.layers, cfg.init_channels, params,
             device, env.world_size)
    train_module = wrap_ddp(model, env)
    record: dict = {}
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        lr = scheduler.get_last_lr()[0]
        model.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs  # linear ramp, as the reference code
        train_loader.sampler.set_pass(epoch)
        if env.enabled:  # distinct drop-path and cutout draws per rank, reproducible from (seed, epoch, rank)
            torch.manual_seed((cfg.seed * 10_007 + epoch) * env.world_size + env.rank)
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        try:
            stats = train_epoch(train_module, train_loader, optimizer, criterion, device, cfg.auxiliary_weight,
                                cfg.grad_clip, desc, cfg.progress and main, cfg.amp, cfg.channels_last)
        except NonFiniteLossError as e:
            kept = f"the last good checkpoint (epoch {epoch}) is kept in {rd.path}" if epoch else \
                "no epoch had completed, so there is no checkpoint"
            raise NonFiniteLossError(f"{e}; {kept}") from None
        scheduler.step()
        if main:
            record = {"epoch": epoch + 1, "lr": lr, "drop_path_prob": model.drop_path_prob, **stats,
                      "params": params}
            if test_loader is not None:
                record["test_loss"], record["test_acc"] = evaluate(model, test_loader, device)
            record["epoch_time_s"] = round(time.time() - t0, 3)
            rd.append_metrics(record)
            save_checkpoint({"kind": "final", "epoch": epoch + 1, "genotype": genotype.to_dict(),
                             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": rng_state()}, rd.file(CHECKPOINT))
            test = f"  test loss {record['test_loss']:.4f} acc {100 * record['test_acc']:.2f}%" if test_loader else ""
            log.info("%s  lr %.5f  train loss %.4f acc %.2f%%%s  %.1fs", desc, lr, stats["train_loss"],
                     100 * stats["train_acc"], test, record["epoch_time_s"])
        barrier(env)
    if main:
        rd.close()
        if "test_acc" in record:
            log.info("final test accuracy %.2f%% with %d parameters", 100 * record["test_acc"], params)
    shutdown(env)
    return rd, record


def _restore(rd: RunDir, genotype: Genotype, model, optimizer, scheduler, truncate: bool = True) -> int:
    path = rd.file(CHECKPOINT)
    if not os.path.exists(path):
        log.warning("%s has no checkpoint yet; starting from epoch 0", rd.path)
        return 0
    state = load_checkpoint(path, kind="final")
    with restoring(path):
        saved = Genotype.from_dict(state["genotype"])
        if saved != genotype:
            raise CheckpointError(f"{path} was trained with another genotype ({saved})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
    if truncate:
        rd.truncate_metrics(state["epoch"])
    return int(state["epoch"])
