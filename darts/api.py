"""The Python entry points: :func:`search` and :func:`retrain`. The command line (``darts-forge search``,
``darts-forge retrain``) parses its flags into the same keywords and calls these.

Every option of the command line is a keyword here, with dashes as underscores (``--arch-lr`` -> ``arch_lr``,
PC-DARTS's ``--pc-k`` -> ``pc_k``). A data set of your own is a ``torch.utils.data.Dataset`` of ``(image, label)``
pairs (images float tensors ``(C, H, W)``) or a pair of tensors ``(images, labels)``.
"""
from __future__ import annotations

import os

from .config import resolve_retrain, resolve_saved_retrain, resolve_saved_search, resolve_search
from .data import user_data
from .errors import ConfigError
from .retrain import RetrainResult, run_retrain
from .run.rundir import RunDir
from .search_run import SearchResult, run_search


def search(*, train_data=None, num_classes: int | None = None, **options) -> SearchResult:
    """Run a search (or resume one with ``resume=RUN_DIR``) and return its :class:`SearchResult`.

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


def _saved(resume: str) -> tuple[dict, str]:
    rd = RunDir.open_existing(resume)
    return rd.read_config(), rd.file("config.json")


def _search_setup(options: dict):
    if options.get("resume"):
        saved, path = _saved(options["resume"])
        return resolve_saved_search(saved, options, path)
    return resolve_search(options, source="")
