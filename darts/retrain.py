"""A whole retraining run: the discrete network of a genotype (its space's), trained from scratch with the paper's
protocol, evaluated every epoch, checkpointed.

:func:`run_retrain` reads top-down; it shares its scaffolding with the search (:mod:`darts.run.session`).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .config import RetrainSetup
from .data import DataBundle, load_data, make_loader
from .engine import evaluate, resolve_device, train_epoch
from .final import count_parameters
from .run.checkpoint import fingerprint
from .run.distributed import wrap_ddp
from .run.session import Run

log = logging.getLogger(__name__)


@dataclass
class RetrainResult:
    """What a retraining returns: the trained ``model`` (eval mode), its last ``test_accuracy`` (None without a test
    set), its ``params`` (as the papers count them: the auxiliary head excluded), the ``run_dir`` and the per-epoch
    ``metrics``."""

    model: nn.Module
    test_accuracy: float | None
    params: int
    run_dir: str
    metrics: list = field(default_factory=list)
    genotype: object = None


def run_retrain(setup: RetrainSetup, data: DataBundle | None = None) -> RetrainResult:
    """Train (or resume) the discrete network of the setup's genotype (its space's: NetworkCIFAR / NetworkImageNet
    for DARTS cells, the benchmark's network for NAS-Bench-201 cells) on ``data`` (default: the config's data set)."""
    cfg, space, genotype, name = setup.cfg, setup.space, setup.genotype, setup.name
    with Run.start("final", setup.to_dict(), fingerprint=fingerprint(setup.fingerprint_options()), out=cfg.out,
                   resume=cfg.resume, device=resolve_device(cfg.device),
                   default_out=f"runs/final-{name}-%Y%m%d-%H%M%S", meta={"genotype": genotype.to_dict()}) as run:
        torch.manual_seed(cfg.seed)
        data = data or load_data(cfg.dataset, cfg.data, cfg.download, cfg.image_size, cfg.imagenet_layout,
                                 augment=True, cutout=cfg.cutout_length if cfg.cutout else 0)
        train_loader = make_loader(data.train, range(len(data.train)), cfg.batch_size, cfg.seed, cfg.num_workers,
                                   rank=run.env.rank, world_size=run.env.world_size)
        test_loader = None if data.test is None else make_loader(
            data.test, range(len(data.test)), min(cfg.batch_size, len(data.test)), 0, cfg.num_workers, shuffle=False)
        model = space.build_network(genotype, cfg, data.num_classes, data.in_channels, data.image_size).to(run.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        params = count_parameters(model)
        optimizer = torch.optim.SGD(model.parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    nesterov=cfg.nesterov)
        if cfg.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs)
        else:  # the DARTS ImageNet schedule: x0.97 every epoch
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.97)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        start, _ = run.restore(cfg.epochs, expect={"genotype": genotype.to_dict()},
                               belongs="it trained another genotype", model=model, optimizer=optimizer,
                               scheduler=scheduler)
        run.commit()
        if run.main and not run.resumed:
            genotype.save(run.dir.file("genotype.json"))
        log.info("retraining %s on %s: %s (--layers %d, %d channels), %d parameters (auxiliary head excluded), "
                 "device %s x %d", name, cfg.dataset, type(model).__name__, cfg.layers, cfg.init_channels, params,
                 run.device, run.env.world_size)

        train_module, record, records = wrap_ddp(model, run.env), {}, []
        for epoch in range(start, cfg.epochs):
            t0, lr = time.time(), scheduler.get_last_lr()[0]
            model.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs  # linear ramp, as the reference code
            train_loader.sampler.set_pass(epoch)
            if run.env.enabled:  # distinct drop-path and cutout draws per rank, reproducible from (seed, epoch, rank)
                torch.manual_seed((cfg.seed * 10_007 + epoch) * run.env.world_size + run.env.rank)
            desc = f"epoch {epoch + 1}/{cfg.epochs}"
            with run.epoch(epoch):
                stats = train_epoch(train_module, train_loader, optimizer, criterion, run.device, cfg.auxiliary_weight,
                                    cfg.grad_clip, desc, cfg.progress and run.main, cfg.amp, cfg.channels_last)
            scheduler.step()
            record = {"epoch": epoch + 1, "lr": lr, "drop_path_prob": model.drop_path_prob, **stats, "params": params}
            if run.main and test_loader is not None:
                record["test_loss"], record["test_acc"] = evaluate(model, test_loader, run.device)
            record["epoch_time_s"] = round(time.time() - t0, 3)
            if run.main:
                test = f"  test loss {record['test_loss']:.4f} acc {100 * record['test_acc']:.2f}%" \
                    if "test_acc" in record else ""
                log.info("%s  lr %.5f  train loss %.4f acc %.2f%%%s  %.1fs", desc, lr, stats["train_loss"],
                         100 * stats["train_acc"], test, record["epoch_time_s"])
            run.end_epoch(record, {"genotype": genotype.to_dict(), "model": model.state_dict(),
                                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
        if run.main:
            records = run.dir.read_metrics()
            if records and "test_acc" in records[-1]:
                log.info("final test accuracy %.2f%% with %d parameters", 100 * records[-1]["test_acc"], params)
        model.eval()
        last = records[-1] if records else record
        return RetrainResult(model, last.get("test_acc"), params, run.dir.path, records, genotype)
