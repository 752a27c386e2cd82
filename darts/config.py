"""Typed run configurations and their resolution: user values, then the presets of the method, the space and the
data set, then the defaults; validated in one place.

:class:`SearchConfig` holds a search's general options and :class:`RetrainConfig` a retraining's; the chosen search
method and space bring their own ``Options`` (see :mod:`darts.options`). :func:`resolve_search` and
:func:`resolve_retrain` turn the values a user gave, keyed by keyword (the command line's flags with underscores,
or :func:`darts.search`'s arguments), into a validated :class:`SearchSetup` / :class:`RetrainSetup`. Fields whose
default is ``None`` take a preset; the help text says which.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, fields

from .dispatch import kernel_choices
from .errors import ConfigError, DartsError
from .methods import METHODS
from .options import OptionSpec, check_options, check_value, option, specs, to_dict
from .plugins import load_plugins
from .spaces import SPACES, load_any_genotype, space_of_format
from .strategies import EVALUATORS, STRATEGIES
from .zoo import get_genotype

log = logging.getLogger(__name__)

#: the data sets the command line can load (``custom``: a Dataset passed to the Python API)
DATASETS = ("digits", "cifar10", "cifar100", "folder", "synthetic")
#: data sets at the papers' scale, where a method's ``paper`` presets apply; on the others its ``small`` ones
PAPER_SCALE_DATASETS = ("cifar10", "cifar100", "folder", "synthetic", "custom")
#: options of a search or retraining that may change when it is resumed: where and how fast it runs, not what
RUNTIME_FIELDS = frozenset({"resume", "device", "kernels", "num_workers", "progress", "download", "data", "debug"})


@dataclass
class SearchConfig:
    """The general options of a search, written to ``RUN_DIR/config.json`` with the method's and the space's."""

    dataset: str = option("digits", "data set: the embedded UCI digits (offline default), CIFAR, an ImageFolder "
                          "tree, or random tensors (from Python also your own: darts.search(train_data=...))",
                          choices=DATASETS + ("custom",), metavar="{" + ",".join(DATASETS) + "}")
    data: str | None = option(None, "data directory (CIFAR root, or the ImageFolder tree)", metavar="DIR")
    download: bool = option(False, "download CIFAR into --data if missing (needs internet)")
    image_size: int = option(32, "resize ImageFolder images to this size", positive=True, max=4096)
    epochs: int | None = option(None, "search epochs (cifar: 50, digits: 6)", positive=True, max=100_000)
    batch_size: int | None = option(None, "batch size of both splits (cifar: 64, digits: 64)", positive=True,
                                    max=1 << 20)
    train_portion: float = option(0.5, "fraction of the training set used for weights; the rest trains α", min=0,
                                  max=1, min_exclusive=True, max_exclusive=True)
    lr: float | None = option(None, "initial weight learning rate (SGD, cosine schedule; darts: 0.025)",
                              positive=True)
    lr_min: float | None = option(None, "final weight learning rate (darts: 0.001)", nonneg=True)
    momentum: float = option(0.9, "SGD momentum", min=0, max=1, max_exclusive=True)
    weight_decay: float | None = option(None, "SGD weight decay (darts: 3e-4; nb201 and gdas: 5e-4)", nonneg=True)
    nesterov: bool | None = option(None, "Nesterov momentum for the weights (on for nb201 and gdas, as AutoDL's "
                                   "configs; the second-order unrolled step uses plain momentum, as theirs)")
    grad_clip: float = option(5.0, "clip the weight gradient to this global norm", positive=True)
    arch_lr: float | None = option(None, "α learning rate (Adam; darts: 3e-4)", positive=True)
    arch_beta1: float | None = option(None, "α Adam beta1 (0.5; fairdarts: 0.9)", min=0, max=1, max_exclusive=True)
    arch_beta2: float = option(0.999, "α Adam beta2", min=0, max=1, max_exclusive=True)
    arch_weight_decay: float | None = option(None, "α weight decay (1e-3)", nonneg=True)
    arch_warmup: int | None = option(None, "epochs of weight steps only before α is first updated (darts: 0, "
                                     "pcdarts: 15, drnas: 10 per stage on CIFAR)", nonneg=True, max=100_000)
    init_channels: int | None = option(None, "channels of the first cell (cifar: 16, digits: 8)", positive=True,
                                       max=65536)
    method: str = option("darts", "search method (see the README's table, or --help for their options)",
                         metavar="NAME")
    space: str = option("darts", "search space: darts (the DARTS CNN cell) or nb201 (NAS-Bench-201), or one a "
                        "--plugin registers", metavar="NAME")
    strategy: str | None = option(None, "a multi-trial strategy instead of the one-shot --method: random, rea "
                                  "(regularised evolution), reinforce, ls (local search), bo (Optuna TPE), grid "
                                  "(every cell), or one a --plugin registers; it samples discrete cells and asks "
                                  "--evaluator to score them", metavar="NAME")
    evaluator: str = option("table", "--strategy: how a cell is scored: table (the benchmark's accuracy, e.g. "
                            "--nb201-table), proxy (a zero-cost --proxy at initialisation) or train (--eval-epochs "
                            "of training)", metavar="NAME")
    budget_evals: int = option(100, "--strategy: the number of cells evaluated", positive=True, max=10**9)
    proxy: str = option("synflow", "--evaluator proxy: synflow, snip, grasp, fisher, grad_norm, jacov, nwot, plain, "
                        "params, flops", metavar="NAME")
    eval_epochs: int = option(1, "--evaluator train: epochs of training per cell", positive=True, max=100_000)
    order: str = option("first", "first- or second-order α gradient (DARTS Eq. 7)", choices=("first", "second"))
    hvp: str = option("finite-difference", "second order: Hessian-vector product by the paper's finite difference "
                      "(Eq. 8) or exactly by double backward", choices=("finite-difference", "exact"))
    primitives: tuple[str, ...] | None = option(None, "comma-separated op names: the search space, in column order "
                                                "of α (default: the space's and method's own)", metavar="OP,OP,...")
    plugin: tuple[str, ...] | None = option(None, "comma-separated Python files or modules of yours to import "
                                            "first: they register ops, methods, spaces or kernels", metavar="FILE")
    ops_module: str | None = option(None, "one Python module or .py file to import first (as --plugin)",
                                    metavar="MODULE")
    max_skip: int | None = option(None, "keep at most this many skip connections in the derived normal cell "
                                  "(P-DARTS); default: no limit", nonneg=True, max=1000)
    early_stop: str = option("off", "stop the search early: 'skip' when the normal cell has >= 2 skip connections "
                             "for --skip-patience epochs (DARTS+), 'hessian' when the largest eigenvalue of the "
                             "α-Hessian of the validation loss grows by --hessian-ratio (RobustDARTS)",
                             choices=("off", "skip", "hessian"))
    skip_patience: int = option(1, "--early-stop skip: consecutive epochs with >= 2 skip connections", positive=True,
                                max=100_000)
    hessian_every: int = option(0, "compute the largest eigenvalue of the α-Hessian after epochs 1, 1+K, 1+2K, ... "
                                "and the last, and log it (0: never; --early-stop hessian sets 2, as RobustDARTS)",
                                nonneg=True, metavar="K", max=100_000)
    hessian_ratio: float = option(1.3, "--early-stop hessian: stop when the eigenvalue grows by this factor "
                                  "(RobustDARTS's code: 1.3)", min=1, min_exclusive=True)
    hessian_lag: int = option(4, "--early-stop hessian: compare with the eigenvalue this many computations earlier "
                              "(RobustDARTS's code: 4)", positive=True, max=100_000)
    hessian_window: int = option(5, "--early-stop hessian: average the eigenvalue over this many computations "
                                 "(RobustDARTS's code: 5)", positive=True, max=100_000)
    hessian_start: int = option(11, "--early-stop hessian: ignore comparisons with epochs before this one "
                                "(RobustDARTS: epoch 10 counted from 0; λ rises steeply right after initialisation)",
                                nonneg=True, max=100_000)
    beta_decay: float = option(0.0, "the β-DARTS regulariser with any softmax method: λ·mean_edges logsumexp(α) "
                               "added to the α loss, λ = RATE·epoch (beta-darts: 0.5, the authors'); 0: off",
                               nonneg=True, metavar="RATE")
    selection: str = option("alpha", "how the finished search chooses its cell: alpha (the space's rule on the op "
                            "strengths) or pt (DARTS-PT: keep the op whose removal lowers the supernet's validation "
                            "accuracy most, edge by edge, then each node's two most needed inputs)",
                            choices=("alpha", "pt"))
    pt_interval: float | None = option(None, "--selection pt: epochs of fine-tuning between two decisions (cifar: "
                                       "5, the paper's; digits: 0.5)", nonneg=True)
    pt_val_batches: int | None = option(None, "--selection pt: validation batches each accuracy is measured on "
                                        "(cifar: the whole split; digits: 4)", positive=True, max=10**9)
    cost: str | None = option(None, "log the derived cell's cost each epoch (its retraining network's parameters, "
                              "multiply-adds, or latency from --cost-table); with --cost-target, search under it",
                              choices=("params", "flops", "latency"))
    cost_target: float | None = option(None, "--cost: penalise the supernet's expected cost above this (in the "
                                       "table's unit: parameters, multiply-adds, ms) and derive a cell under it",
                                       positive=True, metavar="X")
    cost_weight: float = option(1.0, "--cost-target: the penalty's weight λ", nonneg=True)
    cost_form: str = option("hinge", "--cost-target: hinge = λ·max(0, E[cost]/target − 1) (ProxylessNAS, TAS), "
                            "log = λ·log(E[cost]/target) (FBNet)", choices=("hinge", "log"))
    cost_table: str | None = option(None, "--cost latency: the table darts-forge profile wrote", metavar="FILE")
    seed: int = option(2, "random seed", min=0, max=2**63 - 1)
    out: str | None = option(None, "run directory (default runs/search-DATASET-TIMESTAMP)", metavar="RUN_DIR")
    resume: str | None = option(None, "continue the run in RUN_DIR from its last completed epoch", metavar="RUN_DIR")
    device: str = option("auto", "cpu, cuda, cuda:N, or auto (cuda if available)")
    kernels: str = option("auto", "mixed-op implementation: auto (the best for the device), reference, fused_cpu, "
                          "triton, or one a --plugin registers", metavar="NAME")
    num_workers: int | None = option(None, "data loader worker processes (cifar: 2, in-memory sets: 0)", nonneg=True,
                                     max=1024)
    amp: bool = option(False, "bfloat16 autocast for the weight steps (the α step stays float32)")
    channels_last: bool = option(False, "channels-last memory format for the model and its inputs")
    progress: bool = option(True, "show a progress bar with ETA (a line every 30 s when not on a terminal)")
    debug: bool = option(False, "on an unexpected error, show its whole traceback (it is in the run's log.txt)")

    def validate(self) -> "SearchConfig":
        """Check every value against its declaration and the combinations of values; returns ``self``."""
        check_options(self)
        if self.kernels not in kernel_choices():
            raise ConfigError(f"unknown kernels setting {self.kernels!r}; choose from {', '.join(kernel_choices())}")
        if self.lr_min > self.lr:
            raise ConfigError(f"--lr-min ({self.lr_min}) is larger than --lr ({self.lr})")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("--nesterov needs a --momentum above 0 (use --no-nesterov)")
        if self.early_stop == "skip" and self.primitives is not None and "skip_connect" not in self.primitives:
            raise ConfigError("--early-stop skip counts skip_connect, which is not in --primitives")
        if self.max_skip is not None and self.primitives is not None and "skip_connect" not in self.primitives:
            raise ConfigError("--max-skip limits skip_connect, which is not in --primitives")
        if self.cost_target is not None and self.cost is None:
            raise ConfigError("--cost-target needs --cost params, flops or latency (what the target is of)")
        return self


@dataclass
class RetrainConfig:
    """The options of a retraining run, written to ``RUN_DIR/config.json``."""

    genotype: str | None = option(None, "genotype JSON file (a search's RUN_DIR/genotype.json) or DARTS log text",
                                  metavar="FILE")
    arch: str | None = option(None, "a published cell from the zoo instead of --genotype ('list' lists them)",
                              metavar="NAME")
    dataset: str = option("digits", "data set (see `darts-forge search --help`)", choices=DATASETS + ("custom",),
                          metavar="{" + ",".join(DATASETS) + "}")
    data: str | None = option(None, "data directory", metavar="DIR")
    download: bool = option(False, "download CIFAR into --data if missing (needs internet)")
    imagenet_layout: bool = option(False, "build NetworkImageNet (224x224, 3 stride-2 stems) for --dataset folder")
    image_size: int | None = option(None, "input size for --dataset folder (32; 224 with --imagenet-layout)",
                                    positive=True, max=4096)
    epochs: int | None = option(None, "epochs (cifar: 600, imagenet: 250, digits: 10)", positive=True, max=100_000)
    batch_size: int | None = option(None, "batch size (cifar: 96, imagenet: 128, digits: 64)", positive=True,
                                    max=1 << 20)
    lr: float | None = option(None, "initial learning rate (cifar: 0.025, imagenet: 0.1)", positive=True)
    lr_schedule: str | None = option(None, "cosine to 0 (cifar) or step decay x0.97 per epoch (imagenet)",
                                     choices=("cosine", "step"))
    momentum: float = option(0.9, "SGD momentum", min=0, max=1, max_exclusive=True)
    nesterov: bool | None = option(None, "Nesterov momentum (on for NAS-Bench-201 cells, as the benchmark trains)")
    weight_decay: float | None = option(None, "weight decay (cifar: 3e-4, imagenet: 3e-5, nb201: 5e-4)", nonneg=True)
    grad_clip: float | None = option(None, "clip the gradient to this global norm (darts: 5; 0: no clipping, as "
                                     "NAS-Bench-201 trains)", nonneg=True)
    label_smoothing: float | None = option(None, "label smoothing (imagenet: 0.1, else 0)", min=0, max=1,
                                           max_exclusive=True)
    init_channels: int | None = option(None, "channels of the first cell (cifar: 36, imagenet: 48, digits: 16; "
                                       "nb201: 16)", positive=True, max=65536)
    layers: int | None = option(None, "number of cells (cifar: 20, imagenet: 14, digits: 8; nb201: cells per stage, "
                                "5)", positive=True, max=1000)
    auxiliary: bool | None = option(None, "auxiliary head after cell 2*layers//3 (on for cifar/imagenet)")
    auxiliary_weight: float = option(0.4, "weight of the auxiliary loss", nonneg=True)
    cutout: bool | None = option(None, "cutout augmentation (on for cifar)")
    cutout_length: int = option(16, "cutout square side", positive=True, max=4096)
    drop_path_prob: float | None = option(None, "drop path probability, ramped linearly from 0 (cifar: 0.2, "
                                          "imagenet: 0, digits: 0.1)", min=0, max=1, max_exclusive=True)
    plugin: tuple[str, ...] | None = option(None, "comma-separated Python files or modules of yours to import first "
                                            "(ops the genotype uses)", metavar="FILE")
    ops_module: str | None = option(None, "one Python module or .py file to import first (as --plugin)",
                                    metavar="MODULE")
    seed: int = option(0, "random seed", min=0, max=2**63 - 1)
    out: str | None = option(None, "run directory (default runs/final-NAME-TIMESTAMP)", metavar="RUN_DIR")
    resume: str | None = option(None, "continue the run in RUN_DIR from its last completed epoch", metavar="RUN_DIR")
    device: str = option("auto", "cpu, cuda, cuda:N, or auto")
    num_workers: int | None = option(None, "data loader worker processes (cifar: 2, in-memory sets: 0)", nonneg=True,
                                     max=1024)
    amp: bool = option(False, "bfloat16 autocast for forward and backward")
    channels_last: bool = option(False, "channels-last memory format for the model and its inputs")
    progress: bool = option(True, "show a progress bar with ETA")
    debug: bool = option(False, "on an unexpected error, show its whole traceback (it is in the run's log.txt)")

    def validate(self) -> "RetrainConfig":
        """Check every value against its declaration and the combinations of values; returns ``self``."""
        check_options(self)
        if self.nesterov and self.momentum == 0:
            raise ConfigError("--nesterov needs a --momentum above 0 (use --no-nesterov)")
        if self.imagenet_layout and self.dataset != "folder":
            raise ConfigError("--imagenet-layout needs --dataset folder (an ImageNet-style tree)")
        return self


FinalConfig = RetrainConfig  # the name of earlier versions

# The DARTS paper's search hyperparameters, after the method's, the space's and the data set's presets.
SEARCH_DEFAULTS = dict(lr=0.025, lr_min=0.001, weight_decay=3e-4, nesterov=False, arch_lr=3e-4, arch_beta1=0.5,
                       arch_weight_decay=1e-3, arch_warmup=0)
_PAPER_SEARCH = dict(epochs=50, batch_size=64, init_channels=16, num_workers=2, pt_interval=5.0)
SEARCH_PRESETS = {
    "cifar10": _PAPER_SEARCH, "cifar100": _PAPER_SEARCH, "folder": _PAPER_SEARCH,
    "custom": dict(_PAPER_SEARCH, num_workers=0),
    "synthetic": dict(epochs=1, batch_size=32, init_channels=16, num_workers=0, pt_interval=0.5, pt_val_batches=2),
    "digits": dict(epochs=6, batch_size=64, init_channels=8, num_workers=0, pt_interval=0.5, pt_val_batches=4),
}
# A retraining's defaults come from the genotype's space (SearchSpace.retrain_presets); these hold for every one.
RETRAIN_DEFAULTS = dict(nesterov=False, grad_clip=5.0)


# ---------------------------------------------------------------------------------------------------------
# resolution


def general_specs(cls) -> list[OptionSpec]:
    """The option specs of a general config class."""
    return specs(cls)


def method_specs(cls) -> list[OptionSpec]:
    return specs(cls.Options, cls.flag_prefix, owner=f"--method {cls.name}")


def space_specs(cls) -> list[OptionSpec]:
    return specs(cls.Options, cls.flag_prefix, owner=f"--space {cls.name}")


def strategy_specs(cls) -> list[OptionSpec]:
    return specs(cls.Options, cls.flag_prefix, owner=f"--strategy {cls.name}")


def option_owner(dest: str) -> str | None:
    """``--method NAME`` / ``--space NAME`` / ``--strategy NAME`` whose option ``dest`` is, or None."""
    for registry, spec_of in ((METHODS, method_specs), (SPACES, space_specs), (STRATEGIES, strategy_specs)):
        for _, cls in registry.items():
            if any(s.dest == dest for s in spec_of(cls)):
                return spec_of(cls)[0].owner
    return None


@dataclass
class SearchSetup:
    """A resolved, validated search: the general config, the search method and the search space (with options),
    the keywords the user gave, and the derived ``primitives``."""

    cfg: SearchConfig
    method: object
    space: object
    given: frozenset = frozenset()
    strategy: object = None  #: a multi-trial strategy (``--strategy``) instead of the one-shot method

    @property
    def primitives(self) -> tuple[str, ...]:
        return self.cfg.primitives

    def to_dict(self) -> dict:
        """Every option by keyword, JSON-ready: what ``config.json`` holds and :func:`resolve_search` reads back."""
        out = {**to_dict(self.cfg), **to_dict(self.method.options, self.method.flag_prefix),
               **to_dict(self.space.options, self.space.flag_prefix)}
        if self.strategy is not None:
            out.update(to_dict(self.strategy.options, self.strategy.flag_prefix))
        return out

    def fingerprint_options(self) -> dict:
        """The options that decide what the run computes (the runtime ones left out), for the checkpoint."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS | {"out"}}


def _load_plugins(values: dict) -> None:
    load_plugins(values.get("plugin"), values.get("ops_module"))


def _general(dest: str) -> OptionSpec:
    return next(s for s in general_specs(SearchConfig) if s.dest == dest)


class _Tables:
    """The option specs of one search by keyword: general, the method's, the space's and the strategy's."""

    def __init__(self, method_cls, space_cls, strategy_cls=None):
        self.method_cls, self.space_cls, self.strategy_cls = method_cls, space_cls, strategy_cls
        self.general = {s.dest: s for s in general_specs(SearchConfig)}
        self.method = {s.dest: s for s in method_specs(method_cls)}
        self.space = {s.dest: s for s in space_specs(space_cls)}
        self.strategy = {s.dest: s for s in strategy_specs(strategy_cls)} if strategy_cls else {}

    @classmethod
    def of(cls, values: dict, source: str) -> "_Tables":
        """The tables of the method, space and strategy that ``values`` name."""
        method = check_value(_general("method"), values.get("method", "darts"), source)
        space = check_value(_general("space"), values.get("space", "darts"), source)
        strategy = check_value(_general("strategy"), values.get("strategy"), source)
        return cls(METHODS.get(method), SPACES.get(space), STRATEGIES.get(strategy) if strategy else None)

    def tables(self):
        return (self.general, self.method, self.space, self.strategy)

    def spec(self, dest: str) -> OptionSpec:
        for table in self.tables():
            if dest in table:
                return table[dest]
        owner = option_owner(dest)
        flag = "--" + dest.replace("_", "-")
        if owner:
            kind, _ = owner.split()
            current = {"--method": self.method_cls.name, "--space": self.space_cls.name,
                       "--strategy": self.strategy_cls.name if self.strategy_cls else None}[kind]
            uses = f"this run uses {kind} {current}" if current else f"this run has no {kind}"
            raise ConfigError(f"{flag} is an option of {owner}, but {uses}")
        raise ConfigError(f"unknown option {flag}; see --help")

    def split(self, values: dict, source: str):
        """``values`` checked and split into the general options (by keyword) and the method's, the space's and
        the strategy's (by field name)."""
        parts = ({}, {}, {}, {})
        for dest, value in values.items():
            spec = self.spec(dest)
            value = check_value(spec, value, source)
            i = next(i for i, t in enumerate(self.tables()) if dest in t)
            parts[i][dest if i == 0 else spec.name] = value
        return parts


def resolve_search(values: dict, source: str = "command line") -> SearchSetup:
    """A validated :class:`SearchSetup` from the options a user gave, by keyword (``{"epochs": 2, "pc_k": 2}``).

    Plug-ins named by ``plugin`` / ``ops_module`` are imported first, so their ops, methods and spaces can be
    chosen. Options left out take, in this order, the method's presets (its authors' settings in this space, at the
    data set's scale), the space's, the data set's, and DARTS's defaults. Raises :class:`ConfigError` naming the
    option for any bad value, an option of another method or space, or a contradictory combination.
    """
    values = dict(values)
    _load_plugins(values)
    tables = _Tables.of(values, source)
    method_name, space_name = tables.method_cls.name, tables.space_cls.name
    general, mine, theirs, strat = tables.split(values, source)
    method = tables.method_cls(**mine)  # with what was given: a method's presets may depend on its options
    space = tables.space_cls(**theirs)
    dataset = general.get("dataset", "digits")
    paper = dataset in PAPER_SCALE_DATASETS
    layers = [(f"--method {method_name}", method.presets_for(space_name, paper)),
              (f"--space {space_name}", space.presets_for(paper)),
              (f"--dataset {dataset}", SEARCH_PRESETS.get(dataset, {})), ("DARTS", SEARCH_DEFAULTS),
              (f"--space {space_name}", {"primitives": tuple(tables.space_cls.primitives)})]
    preset = {}
    for who, presets in layers:
        for key, value in presets.items():
            try:
                tables.spec(key)
            except ConfigError:
                raise DartsError(f"the presets of {who} set {key!r}, which is no option of this run") from None
            if key not in values:  # the user's value wins, then the first layer that sets it
                preset.setdefault(key, value)
    p_general, p_mine, p_theirs, _ = tables.split(preset, f"the presets of {method_name} in {space_name}")
    cfg = SearchConfig(**{**p_general, **general})
    method = tables.method_cls(**{**p_mine, **mine})
    space = tables.space_cls(**{**p_theirs, **theirs})
    strategy = tables.strategy_cls(**strat) if tables.strategy_cls else None
    return _checked(SearchSetup(cfg, method, space, frozenset(values), strategy))


def _checked(setup: SearchSetup) -> SearchSetup:
    cfg = setup.cfg
    if cfg.early_stop == "hessian" and not cfg.hessian_every:
        if "hessian_every" in setup.given and "resume" not in setup.given:
            raise ConfigError("--early-stop hessian reads the eigenvalue: give --hessian-every K > 0 (or leave it out: "
                              "2, as RobustDARTS)")
        cfg.hessian_every = 2  # RobustDARTS's scripts: --report_freq_hessian 2
    cfg.primitives = setup.space.check_primitives(cfg.primitives)
    cfg.validate()
    EVALUATORS.get(cfg.evaluator)
    if setup.strategy is None:
        setup.method.check_run(cfg, setup.space)
        if cfg.selection == "pt" and not setup.method.uses_alpha:
            raise ConfigError(f"--selection pt measures the ops of a relaxed supernet; --method {setup.method.name} "
                              "samples cells and chooses its own")
        if cfg.beta_decay and not setup.method.softmax_relaxation:
            raise ConfigError(f"--beta-decay regularises the logits of a softmax relaxation; --method "
                              f"{setup.method.name}'s op weights are not a softmax of α")
    setup.space.check_run(cfg, setup.method)
    if "resume" not in setup.given:
        for line in ineffective_search_options(setup):
            log.warning("warning: %s", line)
    return setup


def _data_notes(cfg, given) -> list[str]:
    out = []
    embedded = cfg.dataset in ("digits", "synthetic", "custom")
    if "data" in given and embedded:
        out.append(f"--data has no effect with --dataset {cfg.dataset}, which needs no directory")
    if "download" in given and cfg.download and cfg.dataset not in ("cifar10", "cifar100"):
        out.append(f"--download has no effect with --dataset {cfg.dataset} (only CIFAR is downloaded)")
    if "image_size" in given and cfg.dataset != "folder":
        out.append(f"--image-size has no effect with --dataset {cfg.dataset} (it resizes ImageFolder images)")
    return out


def ineffective_search_options(setup: SearchSetup) -> list[str]:
    """One line for every option the user gave that does nothing in this run (the run goes on)."""
    cfg, given, method = setup.cfg, setup.given, setup.method
    out = _data_notes(cfg, given)
    if setup.strategy is not None:
        ignored = [k for k in ("method", "epochs", "order", "hvp", "arch_lr", "lr", "early_stop", "max_skip", "cost",
                               "cost_target", "selection")
                   if k in given]
        if ignored:
            out.append(f"{', '.join('--' + k.replace('_', '-') for k in ignored)}: no effect with --strategy, which "
                       "trains no supernet")
        for k, needs in (("proxy", "proxy"), ("eval_epochs", "train")):
            if k in given and cfg.evaluator != needs:
                out.append(f"--{k.replace('_', '-')} has no effect without --evaluator {needs}")
        return out
    for k in ("evaluator", "budget_evals", "proxy", "eval_epochs"):
        if k in given:
            out.append(f"--{k.replace('_', '-')} has no effect without --strategy")
    for k in ("cost_weight", "cost_form"):
        if k in given and cfg.cost_target is None:
            out.append(f"--{k.replace('_', '-')} has no effect without --cost-target")
    if "cost_table" in given and cfg.cost != "latency":
        out.append("--cost-table has no effect without --cost latency")
    if "hvp" in given and cfg.order == "first":
        out.append("--hvp has no effect with --order first: it chooses the second-order Hessian-vector product")
    for k in ("pt_interval", "pt_val_batches"):
        if k in given and cfg.selection != "pt":
            out.append(f"--{k.replace('_', '-')} has no effect without --selection pt")
    if not method.uses_alpha:
        given_arch = [k for k in ("arch_warmup", "arch_beta2") if k in given]
        if given_arch:
            out.append(f"{', '.join('--' + k.replace('_', '-') for k in given_arch)}: no effect with --method "
                       f"{method.name}, which samples cells and never steps α")
        return out
    if not any(method.updates_arch(e, cfg.epochs, cfg.arch_warmup) for e in range(cfg.epochs)):
        out.append(f"with --arch-warmup {cfg.arch_warmup} and --epochs {cfg.epochs} no epoch updates α: the derived "
                   "cell is its initial α's")
    if "skip_patience" in given and cfg.early_stop != "skip":
        out.append("--skip-patience has no effect without --early-stop skip")
    for k in ("hessian_ratio", "hessian_lag", "hessian_window", "hessian_start"):
        if k in given and cfg.early_stop != "hessian":
            out.append(f"--{k.replace('_', '-')} has no effect without --early-stop hessian")
    if "arch_beta2" in given and not any(method.updates_arch(e, cfg.epochs, cfg.arch_warmup)
                                         for e in range(cfg.epochs)):
        out.append("--arch-beta2 has no effect: α is never updated")
    return out


def resolve_saved_search(saved: dict, changes: dict, path: str) -> SearchSetup:
    """The :class:`SearchSetup` of a run directory's ``config.json`` (``saved``, every option by keyword), with the
    runtime options in ``changes`` applied; any other change is an error naming the option. The saved values get
    the same validation as the command line's."""
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: the saved config is not a JSON object")
    _load_plugins(saved)
    try:
        tables = _Tables.of(saved, path)
        general, mine, theirs, strat = tables.split(saved, path)
    except DartsError as e:
        raise ConfigError(f"{path}: {e}") from None
    missing = [d for t in tables.tables() for d in t if d not in saved]
    if missing:
        raise ConfigError(f"{path}: the saved config lacks {', '.join(missing)}; it is not a run config of this "
                          "version")
    conflicts = []
    for dest, value in changes.items():
        spec = tables.spec(dest)
        value = check_value(spec, value)
        if dest in RUNTIME_FIELDS:
            general[dest] = value  # the runtime options are all general ones
        elif value != check_value(spec, saved[dest], path):
            conflicts.append(f"--{dest.replace('_', '-')} ({value!r} vs saved {saved[dest]!r})")
    if conflicts:
        raise ConfigError(f"cannot change a resumed run's settings: {', '.join(conflicts)}")
    setup = SearchSetup(SearchConfig(**general), tables.method_cls(**mine), tables.space_cls(**theirs),
                        frozenset(changes), tables.strategy_cls(**strat) if tables.strategy_cls else None)
    try:
        return _checked(setup)
    except DartsError as e:
        raise ConfigError(f"{path}: {e}") from None


@dataclass
class RetrainSetup:
    """A resolved, validated retraining: the config, the genotype to train and its space, and the keywords the user
    gave."""

    cfg: RetrainConfig
    space: object = None
    genotype: object = None
    name: str = "genotype"
    given: frozenset = frozenset()

    def to_dict(self) -> dict:
        return to_dict(self.cfg)

    def fingerprint_options(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS | {"out"}}


def resolve_retrain(values: dict, genotype=None, source: str = "command line") -> RetrainSetup:
    """A validated :class:`RetrainSetup` from the options a user gave, by keyword, and the genotype (an object; else
    the ``genotype`` file or the ``arch`` name of the options). Options left out take the genotype's space's presets
    for the data set (the DARTS paper's CIFAR and ImageNet protocols, NAS-Bench-201's, small ones for digits)."""
    values = dict(values)
    _load_plugins(values)
    table = {s.dest: s for s in general_specs(RetrainConfig)}
    given = {}
    for dest, value in values.items():
        if dest not in table:
            raise ConfigError(f"unknown option --{dest.replace('_', '-')}; see --help")
        given[dest] = check_value(table[dest], value, source)
    cfg = RetrainConfig(**given)
    space, genotype, name = resolve_genotype(cfg, genotype)
    for presets in retrain_layers(space, cfg.dataset, cfg.imagenet_layout):
        for key, value in presets.items():
            if key not in given and getattr(cfg, key) is None:
                setattr(cfg, key, value)
    cfg.validate()
    notes = _data_notes(cfg, given)
    if "cutout_length" in given and not cfg.cutout:
        notes.append("--cutout-length has no effect without --cutout")
    if "auxiliary_weight" in given and not cfg.auxiliary:
        notes.append("--auxiliary-weight has no effect without --auxiliary")
    for line in notes:
        log.warning("warning: %s", line)
    return RetrainSetup(cfg, space, genotype, name, frozenset(values))


def retrain_layers(space, dataset: str, imagenet_layout: bool = False) -> list[dict]:
    """The presets of a retraining, first to last: the space's protocol, then the DARTS paper's for what it leaves
    out (a plug-in space may declare none), then the defaults of every retraining."""
    return [space.retrain_presets(dataset, imagenet_layout),
            SPACES.get("darts")().retrain_presets(dataset, imagenet_layout), RETRAIN_DEFAULTS]


def network_settings(space, dataset: str) -> RetrainConfig:
    """The :class:`RetrainConfig` the space's protocol gives on ``dataset`` (what a multi-trial search builds and
    trains its cells' networks with)."""
    cfg = RetrainConfig(dataset=dataset)
    for presets in retrain_layers(space, dataset):
        for key, value in presets.items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
    return cfg.validate()


def resolve_genotype(cfg, genotype=None):
    """``(space, genotype, short name)`` from a genotype object, ``--genotype FILE`` or ``--arch NAME``."""
    if isinstance(genotype, str):  # a file: the saved genotype of a run being resumed
        space, g = load_any_genotype(genotype)
        return space, g, os.path.basename(os.path.dirname(os.path.abspath(genotype))) or "genotype"
    if genotype is not None:
        fmt = genotype.to_dict().get("format") if hasattr(genotype, "to_dict") else None
        if fmt is None:
            raise ConfigError(f"genotype must be a genotype object, a file or a published cell name, got "
                              f"{type(genotype).__name__}")
        return space_of_format(fmt)(), genotype, "genotype"
    if (cfg.genotype is None) == (cfg.arch is None):
        raise ConfigError("give exactly one of --genotype FILE and --arch NAME")
    if cfg.genotype:
        space, g = load_any_genotype(cfg.genotype)
        return space, g, os.path.basename(os.path.dirname(os.path.abspath(cfg.genotype)))
    return SPACES.get("darts")(), get_genotype(cfg.arch), cfg.arch


def resolve_saved_retrain(saved: dict, changes: dict, path: str, genotype=None) -> RetrainSetup:
    """As :func:`resolve_saved_search`, for a retraining's ``config.json``; ``genotype`` is the run's saved one."""
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: the saved config is not a JSON object")
    _load_plugins(saved)
    table = {s.dest: s for s in general_specs(RetrainConfig)}
    unknown = set(saved) - set(table)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(sorted(unknown))} in the saved config")
    missing = set(table) - set(saved)
    if missing:
        raise ConfigError(f"{path}: the saved config lacks {', '.join(sorted(missing))}")
    values = {d: check_value(table[d], v, path) for d, v in saved.items()}
    conflicts = []
    for dest, value in changes.items():
        if dest in RUNTIME_FIELDS or dest not in table:
            continue
        if check_value(table[dest], value) != values[dest]:
            conflicts.append(f"--{dest.replace('_', '-')} ({value!r} vs saved {values[dest]!r})")
    if conflicts:
        raise ConfigError(f"cannot change a resumed run's settings: {', '.join(conflicts)}")
    for dest in RUNTIME_FIELDS & set(changes) & set(table):
        values[dest] = check_value(table[dest], changes[dest])
    cfg = RetrainConfig(**values).validate()
    space, genotype, name = resolve_genotype(cfg, genotype)
    return RetrainSetup(cfg, space, genotype, name, frozenset(changes))


def config_to_dict(cfg) -> dict:
    """``{keyword: value}`` of a config dataclass, JSON-ready."""
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


__all__ = ["SearchConfig", "RetrainConfig", "FinalConfig", "SearchSetup", "RetrainSetup", "resolve_search",
           "resolve_saved_search", "resolve_retrain", "resolve_saved_retrain", "DATASETS", "fields"]
