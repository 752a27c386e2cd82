"""The Python entry points: :func:`search` and :func:`retrain`. The command line (``darts-forge search``,
``darts-forge retrain``) parses its flags into the same keywords and calls these.

Every option of the command line is a keyword here, with dashes as underscores (``--arch-lr`` -> ``arch_lr``,
PC-DARTS's ``--pc-k`` -> ``pc_k``). A data set of your own is a ``torch.utils.data.Dataset`` of ``(image, label)``
pairs (images float tensors ``(C, H, W)``) or a pair of tensors ``(images, labels)``.
"""
from __future__ import annotations

import os

import torch

from .config import (network_settings, resolve_genotype, resolve_retrain, resolve_saved_retrain,
                     resolve_saved_search, resolve_search)
from .costs import CostTable, profile_latency
from .data import DATA_SHAPES, load_data, user_data
from .engine import resolve_device
from .errors import ConfigError
from .retrain import RetrainResult, run_retrain
from .proxies import PROXIES, score as proxy_score
from .run.rundir import RunDir
from .spaces import SPACES, load_any_genotype
from .search_run import SearchResult, run_search
from .strategy_run import StrategyResult, run_strategy
from .zoo import ZOO, get_genotype


def search(*, train_data=None, num_classes: int | None = None, **options) -> SearchResult | StrategyResult:
    """Run a search (or resume one with ``resume=RUN_DIR``) and return its :class:`SearchResult`; with a
    ``strategy`` (a multi-trial search), its :class:`StrategyResult`.

    Args:
        train_data: your own data set (see the module docstring); it is split into the weights' and α's halves by
            ``train_portion``. Default: the data set ``dataset`` names (``digits``, ``cifar10``, ...).
        num_classes: the number of classes of ``train_data`` (default: its largest label + 1).
        **options: any option of ``darts-forge search``, by keyword: ``epochs=2``, ``method="pcdarts"``,
            ``pc_k=2``, ``out="runs/s1"``, ``primitives=("none", "skip_connect", "sep_conv_3x3")``, ...

    Example::

        result = darts.search(dataset="digits", epochs=2, out="runs/s1")
        result = darts.search(train_data=my_dataset, num_classes=7, epochs=20)
        print(result.genotype, result.run_dir, result.metrics[-1]["val_acc"])
        result = darts.search(space="nb201", strategy="rea", evaluator="table", nb201_table="nb201.csv")

    Raises :class:`darts.errors.DartsError` (one message naming the problem) for any bad option, data or run
    directory.
    """
    data = None
    if train_data is not None:
        if options.get("dataset", "custom") != "custom":
            raise ConfigError(f"give either train_data or dataset={options['dataset']!r}, not both")
        options["dataset"] = "custom"
        data = user_data(train_data, None, num_classes)
    elif num_classes is not None:
        raise ConfigError("num_classes describes train_data; it is given without train_data")
    elif options.get("dataset") == "custom" and not options.get("resume"):
        raise ConfigError("dataset 'custom' is a data set passed from Python: darts.search(train_data=...)")
    setup = _search_setup(options)
    if setup.cfg.dataset == "custom" and data is None:
        raise ConfigError(f"{setup.cfg.resume}: this run searched a data set passed from Python; resume it with "
                          "darts.search(resume=RUN_DIR, train_data=...)")
    if setup.strategy is not None:
        return run_strategy(setup, data)
    return run_search(setup, data)


def retrain(genotype=None, *, train_data=None, test_data=None, num_classes: int | None = None,
            **options) -> RetrainResult:
    """Train the evaluation network of ``genotype`` from scratch (or resume with ``resume=RUN_DIR``) and return
    its :class:`RetrainResult` (``model``, ``test_accuracy``, ``params``, ...).

    Args:
        genotype: a genotype (e.g. ``search(...).genotype``), a genotype file, or a published cell's name
            (``"DARTS_V2"``). Default: the ``genotype`` / ``arch`` option.
        train_data, test_data: your own data sets (see the module docstring); ``test_data`` is evaluated every
            epoch. Default: the data set ``dataset`` names.
        num_classes: the number of classes (default: the largest label of ``train_data`` + 1).
        **options: any option of ``darts-forge retrain``, by keyword (``epochs=30``, ``init_channels=16``, ...).
    """
    if isinstance(genotype, str):  # a file (as --genotype) or a published cell's name (as --arch)
        looks_like_file = os.path.exists(genotype) or os.sep in genotype or genotype.endswith((".json", ".txt"))
        options["genotype" if looks_like_file else "arch"] = genotype
        genotype = None
    data = None
    if train_data is not None:
        if options.get("dataset", "custom") != "custom":
            raise ConfigError(f"give either train_data or dataset={options['dataset']!r}, not both")
        options["dataset"] = "custom"
        data = user_data(train_data, test_data, num_classes)
    elif test_data is not None or num_classes is not None:
        raise ConfigError("test_data and num_classes go with train_data")
    elif options.get("dataset") == "custom" and not options.get("resume"):
        raise ConfigError("dataset 'custom' is a data set passed from Python: darts.retrain(train_data=...)")
    if options.get("resume"):
        saved, path = _saved(options["resume"])
        # what the run trains is its genotype.json, saved at its start
        setup = resolve_saved_retrain(saved, options, path, os.path.join(options["resume"], "genotype.json"))
    else:
        setup = resolve_retrain(options, genotype, source="")
    if setup.cfg.dataset == "custom" and data is None:
        raise ConfigError(f"{setup.cfg.resume}: this run trained on a data set passed from Python; resume it with "
                          "darts.retrain(resume=RUN_DIR, train_data=...)")
    return run_retrain(setup, data)


def score_cells(cells, proxies=("synflow", "params", "flops"), *, dataset: str = "synthetic", data: str | None = None,
                batch_size: int = 64, seed: int = 0, space: str | None = None) -> list[dict]:
    """Zero-cost proxy scores (:mod:`darts.proxies`) of ``cells`` at initialisation, one dict per cell.

    Args:
        cells: genotypes, genotype files, NAS-Bench-201 strings or published cell names, mixed as you like.
        proxies: registered proxy names.
        dataset: the data set whose shape, classes and first training batch are used (``synthetic``: CIFAR-shaped
            random tensors; the data-independent proxies read only the shape).
        batch_size, seed: the batch's size, and the seed of each network's initialisation.
        space: the space of the cells (default: each cell's own).

    Each cell's network is its space's discrete network with the space's protocol for ``dataset`` (NAS-Bench-201:
    the benchmark's C=16, N=5; DARTS: the retraining network), as NAS-Bench-Suite-Zero scores them.
    """
    for p in proxies:
        PROXIES.get(p)
    bundle = load_data(dataset, data, False, 32, augment=False)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(bundle.train), generator=gen)[:batch_size].tolist()
    xs, ys = zip(*(bundle.train[i] for i in idx))
    batch = (torch.stack(xs), torch.as_tensor(ys))
    rows = []
    for cell in cells:
        cell_space, genotype = _any_cell(cell, space)
        cfg = network_settings(cell_space, dataset)
        row = {"cell": str(cell) if isinstance(cell, str) else str(genotype)}
        for p in proxies:
            torch.manual_seed(seed)
            net = cell_space.build_network(genotype, cfg, bundle.num_classes, bundle.in_channels, bundle.image_size)
            row[p] = proxy_score(net, p, batch, copy=False)
        rows.append(row)
    return rows


def profile(space: str = "darts", *, dataset: str = "digits", batch_size: int = 1, device: str = "cpu",
            primitives=None, init_channels: int | None = None, layers: int | None = None, warmup: int = 5,
            repeats: int = 20, calibrate: int = 4, out: str | None = None, progress=None) -> CostTable:
    """Measure the latency of every op of ``space`` at every position of its retraining network for ``dataset``
    (the space's protocol; ``init_channels`` / ``layers`` override it) on ``device`` at ``batch_size``, the ops'
    times scaled by one factor fitted on ``calibrate`` whole networks of random cells (0: unscaled): the table
    ``--cost latency --cost-table FILE`` reads. Written to ``out`` (JSON) if given.

    Example: ``darts.profile("darts", dataset="cifar10", batch_size=32, out="lat.json")``.
    """
    sp = SPACES.get(space)()
    ncfg = network_settings(sp, dataset)
    if init_channels is not None:
        ncfg.init_channels = init_channels
    if layers is not None:
        ncfg.layers = layers
    classes, channels, size = DATA_SHAPES.get(dataset, DATA_SHAPES["cifar10"])
    prims = sp.check_primitives(primitives if primitives is not None else sp.primitives)
    for name, value in (("batch_size", batch_size), ("warmup", warmup), ("repeats", repeats),
                        ("calibrate", calibrate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name in ("warmup", "calibrate")
                                                                               else 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    table = profile_latency(sp, ncfg, prims, classes, channels, size, batch_size=batch_size,
                            device=resolve_device(device), warmup=warmup, repeats=repeats, calibrate=calibrate,
                            progress=progress)
    if out:
        table.save(out)
    return table


def _any_cell(cell, space_name):
    """``(space, genotype)`` of a genotype object, a file, a NAS-Bench-201 string or a published cell's name."""
    if not isinstance(cell, str):
        space, genotype, _ = resolve_genotype(None, cell)
    elif os.path.exists(cell):
        space, genotype = load_any_genotype(cell)
    elif cell.lstrip().startswith("|"):
        space = SPACES.get("nb201")()
        genotype = space.parse_genotype_text(cell)
    elif cell in ZOO:
        space, genotype = SPACES.get("darts")(), get_genotype(cell)
    else:
        raise ConfigError(f"{cell!r} is not a genotype file, a NAS-Bench-201 string or a published cell (see "
                          "darts-forge zoo)")
    if space_name is not None and space.name != space_name:
        raise ConfigError(f"{cell!r} is a cell of --space {space.name}, not {space_name}")
    return space, genotype


def _saved(resume: str) -> tuple[dict, str]:
    rd = RunDir.open_existing(resume)
    return rd.read_config(), rd.file("config.json")


def _search_setup(options: dict):
    if options.get("resume"):
        saved, path = _saved(options["resume"])
        return resolve_saved_search(saved, options, path)
    return resolve_search(options, source="")
