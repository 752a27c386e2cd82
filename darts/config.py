"""Typed run configurations and the command line generated from them.

Each field of :class:`SearchConfig` / :class:`FinalConfig` becomes a flag (``arch_lr`` ↔ ``--arch-lr``) with its
help text from the field's metadata. Fields whose default is ``None`` take a per-data-set preset (the DARTS
paper's values for CIFAR, small ones for the embedded digits set) when the user does not set them.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field, fields

from .errors import ConfigError
from .ops import DARTS_PRIMITIVES

DATASETS = ("digits", "cifar10", "cifar100", "folder", "synthetic")


def _f(default, help: str, choices=None, metavar=None, positive=False, nonneg=False):
    return field(default=default, metadata=dict(help=help, choices=choices, metavar=metavar, positive=positive,
                                                nonneg=nonneg))


@dataclass
class SearchConfig:
    """Everything a search run needs; written to ``RUN_DIR/config.json``."""

    dataset: str = _f("digits", "data set: the embedded UCI digits (offline default), CIFAR, an ImageFolder tree, "
                      "or random tensors", choices=DATASETS)
    data: str | None = _f(None, "data directory (CIFAR root, or the ImageFolder tree)", metavar="DIR")
    download: bool = _f(False, "download CIFAR into --data if missing (needs internet)")
    image_size: int = _f(32, "resize ImageFolder images to this size", positive=True)
    epochs: int | None = _f(None, "search epochs (cifar: 50, digits: 6)", positive=True)
    batch_size: int | None = _f(None, "batch size of both splits (cifar: 64, digits: 64)", positive=True)
    train_portion: float = _f(0.5, "fraction of the training set used for weights; the rest trains α")
    lr: float | None = _f(None, "initial weight learning rate (SGD, cosine schedule; darts: 0.025, pcdarts and "
                          "drnas: 0.1)", positive=True)
    lr_min: float | None = _f(None, "final weight learning rate (darts: 0.001, pcdarts and drnas: 0)", nonneg=True)
    momentum: float = _f(0.9, "SGD momentum", nonneg=True)
    weight_decay: float | None = _f(None, "SGD weight decay (darts: 3e-4; nb201 and gdas: 5e-4)", nonneg=True)
    nesterov: bool | None = _f(None, "Nesterov momentum for the weights (on for nb201 and gdas, as AutoDL's configs; "
                               "the second-order unrolled step uses plain momentum, as theirs)")
    grad_clip: float = _f(5.0, "clip the weight gradient to this global norm", positive=True)
    arch_lr: float | None = _f(None, "α learning rate (Adam; darts: 3e-4, pcdarts and drnas: 6e-4)", positive=True)
    arch_beta1: float | None = _f(None, "α Adam beta1 (0.5; fairdarts: 0.9)", nonneg=True)
    arch_beta2: float = _f(0.999, "α Adam beta2", nonneg=True)
    arch_weight_decay: float | None = _f(None, "α weight decay (1e-3)", nonneg=True)
    arch_warmup: int | None = _f(None, "epochs of weight steps only before α is first updated (darts: 0, "
                                 "pcdarts: 15, drnas: 10 on CIFAR)", nonneg=True)
    init_channels: int | None = _f(None, "channels of the first cell (cifar: 16, digits: 8)", positive=True)
    layers: int | None = _f(None, "number of cells (cifar: 8, digits: 5)", positive=True)
    nodes: int = _f(4, "intermediate nodes per cell", positive=True)
    stem_multiplier: int = _f(3, "stem channels = stem_multiplier * init_channels", positive=True)
    method: str = _f("darts", "search method: darts, pcdarts, gdas, fairdarts, drnas, darts-, sdarts-rs, or one "
                     "registered by --ops-module (see the README's table)", metavar="NAME")
    space: str = _f("darts", "search space: the DARTS CNN cell, or NAS-Bench-201's cell and macro network",
                    choices=("darts", "nb201"))
    order: str = _f("first", "first- or second-order α gradient (DARTS Eq. 7)", choices=("first", "second"))
    hvp: str = _f("finite-difference", "second order: Hessian-vector product by the paper's finite difference "
                  "(Eq. 8) or exactly by double backward", choices=("finite-difference", "exact"))
    primitives: tuple[str, ...] | None = _f(None, "comma-separated op names: the search space, in column order of "
                                            "α (default: the space's own: " + ",".join(DARTS_PRIMITIVES) +
                                            " for darts; none,skip_connect,nor_conv_1x1,nor_conv_3x3,avg_pool_3x3 "
                                            "for nb201)", metavar="OP,OP,...")
    ops_module: str | None = _f(None, "Python module or .py file that registers extra ops (@register_op)",
                                metavar="MODULE")
    max_skip: int | None = _f(None, "keep at most this many skip connections in the derived normal cell "
                              "(P-DARTS); default: no limit", nonneg=True)
    early_stop: str = _f("off", "stop the search early: 'skip' when the normal cell has >= 2 skip connections "
                         "for --skip-patience epochs (DARTS+), 'hessian' when the dominant eigenvalue of the "
                         "α-Hessian of the validation loss grows by --hessian-ratio (RobustDARTS)",
                         choices=("off", "skip", "hessian"))
    skip_patience: int = _f(1, "--early-stop skip: consecutive epochs with >= 2 skip connections", positive=True)
    hessian_every: int = _f(0, "compute the largest eigenvalue of the α-Hessian after epochs 1, 1+K, 1+2K, ... and "
                            "the last, and log it (0: never; --early-stop hessian sets 2, as RobustDARTS)",
                            nonneg=True, metavar="K")
    hessian_ratio: float = _f(1.3, "--early-stop hessian: stop when the eigenvalue grows by this factor "
                              "(RobustDARTS's code: 1.3)", positive=True)
    hessian_lag: int = _f(4, "--early-stop hessian: compare with the eigenvalue this many computations earlier "
                          "(RobustDARTS's code: 4)", positive=True)
    hessian_window: int = _f(5, "--early-stop hessian: average the eigenvalue over this many computations "
                             "(RobustDARTS's code: 5)", positive=True)
    hessian_start: int = _f(11, "--early-stop hessian: ignore comparisons with epochs before this one (RobustDARTS: "
                            "epoch 10 counted from 0; λ rises steeply right after initialisation)", nonneg=True)
    nb201_cells: int | None = _f(None, "--space nb201: cells per stage N (cifar: 5, digits: 1)", positive=True)
    nb201_file: str | None = _f(None, "--space nb201: the official benchmark file; with the nas_201_api package "
                                "installed, the derived cell's true accuracy is logged each epoch", metavar="FILE")
    pc_k: int = _f(4, "[pcdarts] 1/K of the channels go through the mixed op", positive=True)
    gdas_tau_max: float = _f(10.0, "[gdas] initial Gumbel-softmax temperature", positive=True)
    gdas_tau_min: float = _f(0.1, "[gdas] final temperature", positive=True)
    gdas_cell_rule: str = _f("pairs", "[gdas] DARTS-space cell rule: the two strongest (op, input) pairs per node "
                             "(the authors'), or the DARTS rule (two distinct inputs)", choices=("pairs", "darts"))
    gdas_unsampled_terms: bool | None = _f(None, "[gdas] add the zero-valued straight-through weights of the "
                                           "unsampled ops to each edge, so every α gets a gradient (the authors' "
                                           "NAS-Bench-201 cell; on for nb201, off for darts)")
    fair_zero_one_weight: float = _f(10.0, "[fairdarts] weight of the zero-one loss", nonneg=True)
    fair_cell_rule: str = _f("threshold", "[fairdarts] cell rule: the DARTS edges, each kept only if its sigmoid "
                             "reaches --fair-threshold (the authors'), or the DARTS rule",
                             choices=("threshold", "darts"))
    fair_threshold: float = _f(0.85, "[fairdarts] sigmoid an op must reach to be kept", positive=True)
    drnas_reg: str = _f("l2", "[drnas] regulariser: l2 (α weight decay of --drnas-reg-scale, the authors' default) "
                        "or the KL to the Dir(1) anchor (then no α weight decay)", choices=("kl", "l2"))
    drnas_reg_scale: float = _f(1e-3, "[drnas] scale of the regulariser", nonneg=True)
    drnas_k: int | None = _f(None, "[drnas] 1/K of the channels go through the mixed op (darts: 4, nb201: 1)",
                             positive=True)
    drnas_keep_ops: int | None = _f(None, "[drnas] ops each edge keeps in the second half of the search (darts: 4; "
                                    "0: no pruning, as in nb201)", nonneg=True)
    dartsminus_beta0: float = _f(1.0, "[darts-] initial coefficient of the auxiliary skip", nonneg=True)
    dartsminus_decay: str = _f("linear", "[darts-] decay of the coefficient to 0", choices=("linear", "cosine"))
    sdarts_epsilon: float = _f(0.3, "[sdarts-rs] final half-width of the uniform α noise", nonneg=True)
    sdarts_epsilon_min: float = _f(0.03, "[sdarts-rs] initial half-width", nonneg=True)
    seed: int = _f(2, "random seed")
    out: str | None = _f(None, "run directory (default runs/search-DATASET-TIMESTAMP)", metavar="RUN_DIR")
    resume: str | None = _f(None, "continue the run in RUN_DIR from its last completed epoch", metavar="RUN_DIR")
    device: str = _f("auto", "cpu, cuda, cuda:N, or auto (cuda if available)")
    kernels: str = _f("auto", "mixed-op implementation (auto: the best for the device)",
                      choices=("auto", "reference", "triton"))
    num_workers: int | None = _f(None, "data loader worker processes (cifar: 2, in-memory sets: 0)", nonneg=True)
    amp: bool = _f(False, "bfloat16 autocast for the weight steps (the α step stays float32)")
    channels_last: bool = _f(False, "channels-last memory format for the model and its inputs")
    progress: bool = _f(True, "show a progress bar with ETA (a line every 30 s when not on a terminal)")

    def validate(self) -> "SearchConfig":
        _validate_common(self)
        for field_name, method in METHOD_FIELDS.items():
            default = SearchConfig.__dataclass_fields__[field_name].default
            if getattr(self, field_name) != default and self.method != method:
                raise ConfigError(f"--{field_name.replace('_', '-')} is an option of --method {method}, "
                                  f"but this run uses --method {self.method}")
        if self.space == "nb201" and self.nodes != 4:
            raise ConfigError("--space nb201 has a fixed cell of 4 nodes; do not set --nodes")
        if self.gdas_tau_min > self.gdas_tau_max:
            raise ConfigError(f"--gdas-tau-min ({self.gdas_tau_min}) is larger than --gdas-tau-max")
        if self.sdarts_epsilon_min > self.sdarts_epsilon:
            raise ConfigError(f"--sdarts-epsilon-min ({self.sdarts_epsilon_min}) is larger than --sdarts-epsilon")
        if not 0.0 < self.train_portion < 1.0:
            raise ConfigError(f"--train-portion must be strictly between 0 and 1, got {self.train_portion}")
        if self.lr_min > self.lr:
            raise ConfigError(f"--lr-min ({self.lr_min}) is larger than --lr ({self.lr})")
        if not (0 <= self.arch_beta1 < 1 and 0 <= self.arch_beta2 < 1):
            raise ConfigError("--arch-beta1 and --arch-beta2 must be in [0, 1)")
        if not 0 < self.fair_threshold < 1:
            raise ConfigError(f"--fair-threshold is a sigmoid value, strictly between 0 and 1; got {self.fair_threshold}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("--nesterov needs a --momentum above 0 (use --no-nesterov)")
        return self


@dataclass
class FinalConfig:
    """Everything a retraining run needs; written to ``RUN_DIR/config.json``."""

    genotype: str | None = _f(None, "genotype JSON file (a search's RUN_DIR/genotype.json) or DARTS log text",
                              metavar="FILE")
    arch: str | None = _f(None, "a published cell from the zoo instead of --genotype ('list' lists them)",
                          metavar="NAME")
    dataset: str = _f("digits", "data set (see train_search.py)", choices=DATASETS)
    data: str | None = _f(None, "data directory", metavar="DIR")
    download: bool = _f(False, "download CIFAR into --data if missing (needs internet)")
    imagenet_layout: bool = _f(False, "build NetworkImageNet (224x224, 3 stride-2 stems) for --dataset folder")
    image_size: int | None = _f(None, "input size for --dataset folder (32; 224 with --imagenet-layout)",
                                positive=True)
    epochs: int | None = _f(None, "epochs (cifar: 600, imagenet: 250, digits: 10)", positive=True)
    batch_size: int | None = _f(None, "batch size (cifar: 96, imagenet: 128, digits: 64)", positive=True)
    lr: float | None = _f(None, "initial learning rate (cifar: 0.025, imagenet: 0.1)", positive=True)
    lr_schedule: str | None = _f(None, "cosine to 0 (cifar) or step decay x0.97 per epoch (imagenet)",
                                 choices=("cosine", "step"))
    momentum: float = _f(0.9, "SGD momentum", nonneg=True)
    weight_decay: float | None = _f(None, "weight decay (cifar: 3e-4, imagenet: 3e-5)", nonneg=True)
    grad_clip: float = _f(5.0, "clip the gradient to this global norm", positive=True)
    label_smoothing: float | None = _f(None, "label smoothing (imagenet: 0.1, else 0)", nonneg=True)
    init_channels: int | None = _f(None, "channels of the first cell (cifar: 36, imagenet: 48, digits: 16)",
                                   positive=True)
    layers: int | None = _f(None, "number of cells (cifar: 20, imagenet: 14, digits: 8)", positive=True)
    auxiliary: bool | None = _f(None, "auxiliary head after cell 2*layers//3 (on for cifar/imagenet)")
    auxiliary_weight: float = _f(0.4, "weight of the auxiliary loss", nonneg=True)
    cutout: bool | None = _f(None, "cutout augmentation (on for cifar)")
    cutout_length: int = _f(16, "cutout square side", positive=True)
    drop_path_prob: float | None = _f(None, "drop path probability, ramped linearly from 0 (cifar: 0.2, "
                                      "imagenet: 0, digits: 0.1)", nonneg=True)
    ops_module: str | None = _f(None, "Python module or .py file that registers extra ops", metavar="MODULE")
    seed: int = _f(0, "random seed")
    out: str | None = _f(None, "run directory (default runs/final-NAME-TIMESTAMP)", metavar="RUN_DIR")
    resume: str | None = _f(None, "continue the run in RUN_DIR from its last completed epoch", metavar="RUN_DIR")
    device: str = _f("auto", "cpu, cuda, cuda:N, or auto")
    num_workers: int | None = _f(None, "data loader worker processes (cifar: 2, in-memory sets: 0)", nonneg=True)
    amp: bool = _f(False, "bfloat16 autocast for forward and backward")
    channels_last: bool = _f(False, "channels-last memory format for the model and its inputs")
    progress: bool = _f(True, "show a progress bar with ETA")

    def validate(self) -> "FinalConfig":
        _validate_common(self)
        if self.resume is None and (self.genotype is None) == (self.arch is None):
            raise ConfigError("give exactly one of --genotype FILE and --arch NAME")
        if self.imagenet_layout and self.dataset != "folder":
            raise ConfigError("--imagenet-layout needs --dataset folder (an ImageNet-style tree)")
        if self.drop_path_prob is not None and not self.drop_path_prob < 1:
            raise ConfigError(f"--drop-path-prob must be below 1, got {self.drop_path_prob}")
        return self


# Method options: field -> the method it belongs to (setting it for another method is an error).
METHOD_FIELDS = {
    "pc_k": "pcdarts", "gdas_tau_max": "gdas", "gdas_tau_min": "gdas", "gdas_cell_rule": "gdas",
    "gdas_unsampled_terms": "gdas", "fair_zero_one_weight": "fairdarts", "fair_cell_rule": "fairdarts",
    "fair_threshold": "fairdarts", "drnas_reg": "drnas", "drnas_reg_scale": "drnas", "drnas_k": "drnas",
    "drnas_keep_ops": "drnas", "dartsminus_beta0": "darts-", "dartsminus_decay": "darts-",
    "sdarts_epsilon": "sdarts-rs", "sdarts_epsilon_min": "sdarts-rs",
}
# The DARTS paper's search hyperparameters, for every data set, after the method's and the data set's presets.
SEARCH_DEFAULTS = dict(lr=0.025, lr_min=0.001, weight_decay=3e-4, nesterov=False, arch_lr=3e-4, arch_beta1=0.5,
                       arch_weight_decay=1e-3, arch_warmup=0)
# A space's own settings, after the method's and before the data set's (AutoDL-Projects' NAS-Bench-201 configs,
# configs/nas-benchmark/algos/*.config: weight decay 5e-4, Nesterov momentum).
SPACE_PRESETS = {"darts": {}, "nb201": dict(weight_decay=5e-4, nesterov=True)}
# Data sets where a method's paper settings apply as they are; on the others its "small" presets apply.
PAPER_SCALE_DATASETS = ("cifar10", "cifar100", "folder")

# Presets fill fields left at None. Keys: data set name, or "imagenet" for --imagenet-layout.
SEARCH_PRESETS = {
    "cifar10": dict(epochs=50, batch_size=64, init_channels=16, layers=8, num_workers=2),
    "cifar100": dict(epochs=50, batch_size=64, init_channels=16, layers=8, num_workers=2),
    "folder": dict(epochs=50, batch_size=64, init_channels=16, layers=8, num_workers=2),
    "synthetic": dict(epochs=1, batch_size=32, init_channels=16, layers=8, num_workers=0, nb201_cells=5),
    "digits": dict(epochs=6, batch_size=64, init_channels=8, layers=5, num_workers=0, nb201_cells=1),
}
for _d in ("cifar10", "cifar100", "folder"):
    SEARCH_PRESETS[_d]["nb201_cells"] = 5
_CIFAR_FINAL = dict(epochs=600, batch_size=96, lr=0.025, lr_schedule="cosine", weight_decay=3e-4,
                    label_smoothing=0.0, init_channels=36, layers=20, auxiliary=True, cutout=True,
                    drop_path_prob=0.2, num_workers=2, image_size=32)
FINAL_PRESETS = {
    "cifar10": _CIFAR_FINAL,
    "cifar100": _CIFAR_FINAL,
    "folder": _CIFAR_FINAL,
    "imagenet": dict(epochs=250, batch_size=128, lr=0.1, lr_schedule="step", weight_decay=3e-5,
                     label_smoothing=0.1, init_channels=48, layers=14, auxiliary=True, cutout=False,
                     drop_path_prob=0.0, num_workers=4, image_size=224),
    "synthetic": dict(_CIFAR_FINAL, epochs=1, num_workers=0),
    "digits": dict(epochs=10, batch_size=64, lr=0.025, lr_schedule="cosine", weight_decay=3e-4,
                   label_smoothing=0.0, init_channels=16, layers=8, auxiliary=False, cutout=False,
                   drop_path_prob=0.1, num_workers=0, image_size=8),
}


def apply_presets(cfg):
    """Fill every ``None`` field that has a preset for the config's data set (in place); returns ``cfg``."""
    if isinstance(cfg, FinalConfig):
        key = "imagenet" if cfg.imagenet_layout else cfg.dataset
        layers = [FINAL_PRESETS[key]]
    else:
        from .search_run import build_method
        from .spaces import default_primitives

        method = build_method(cfg)  # with the options given so far: a method's presets may depend on them
        # the method's authors' settings first, then the space's, the data set's, and DARTS's
        layers = [method.presets_for(cfg.space, cfg.dataset in PAPER_SCALE_DATASETS), SPACE_PRESETS.get(cfg.space, {}),
                  SEARCH_PRESETS[cfg.dataset], SEARCH_DEFAULTS, {"primitives": tuple(default_primitives(cfg.space))}]
    for presets in layers:
        for name, value in presets.items():
            if getattr(cfg, name, "absent") is None:
                setattr(cfg, name, value)
    return cfg


def _validate_common(cfg) -> None:
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        flag = "--" + f.name.replace("_", "-")
        if v is None or isinstance(v, bool):
            continue
        if f.metadata.get("positive") and not v > 0:
            raise ConfigError(f"{flag} must be positive, got {v}")
        if f.metadata.get("nonneg") and not v >= 0:
            raise ConfigError(f"{flag} must not be negative, got {v}")
        if f.metadata.get("choices") and v not in f.metadata["choices"]:
            raise ConfigError(f"{flag} must be one of {', '.join(f.metadata['choices'])}, got {v!r}")


# ---------------------------------------------------------------------------------------------------------
# dataclass -> argparse


def _base_type(tp):
    """``int | None`` -> int; ``tuple[str, ...]`` -> tuple."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _base_type(args[0])
    return typing.get_origin(tp) or tp


def _op_list(text: str) -> tuple[str, ...]:
    ops = tuple(s.strip() for s in text.split(",") if s.strip())
    if not ops:
        raise argparse.ArgumentTypeError("expected a comma-separated list of op names")
    return ops


def build_parser(cls, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of the dataclass ``cls``."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        tp = _base_type(hints[f.name])
        kw = dict(dest=f.name, help=f.metadata.get("help", ""), default=argparse.SUPPRESS)
        if f.metadata.get("metavar"):
            kw["metavar"] = f.metadata["metavar"]
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif tp is tuple:
            kw["type"] = _op_list
        else:
            kw["type"] = tp
            if f.metadata.get("choices"):
                kw["choices"] = f.metadata["choices"]
        default = f.default
        if default is not None and not isinstance(default, (bool, tuple)):
            kw["help"] += f" (default: {default})"
        elif isinstance(default, tuple):
            kw["help"] += f" (default: {','.join(default)})"
        parser.add_argument(flag, **kw)
    parser.formatter_class = argparse.HelpFormatter  # defaults are in the help text already
    return parser


def parse_config(cls, argv, description: str = ""):
    """Parse ``argv`` into ``cls``. Returns ``(config, given)`` where ``given`` is the set of field names the
    user set explicitly (a resumed run checks them against its saved config). Presets are not yet applied."""
    ns = build_parser(cls, description).parse_args(argv)
    given = set(vars(ns))
    return cls(**vars(ns)), given


def config_to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def config_from_dict(cls, d: dict):
    """Rebuild a config saved by :func:`config_to_dict`; unknown keys are an error (another version's run)."""
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"saved config has unknown field(s) {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    kw = {k: tuple(v) if _base_type(hints[k]) is tuple and v is not None else v for k, v in d.items()}
    return cls(**kw)
