"""The ``darts-forge`` command: ``search``, ``retrain``, ``plot`` and ``zoo``. Its flags are generated from the
option declarations (:mod:`darts.options`) and it calls :func:`darts.search` / :func:`darts.retrain` with them,
so the command line and the Python API are the same calls.

``train_search.py`` and ``train_final.py`` are this module's ``search`` and ``retrain``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback

from . import __version__
from .api import profile, retrain, score_cells, search
from .export import FORMATS, export_run
from .config import RetrainConfig, SearchConfig, general_specs, method_specs, space_specs, strategy_specs
from .errors import DartsError
from .methods import METHODS
from .options import add_flags
from .plot import main as plot_main
from .plugins import load_plugins
from .proxies import PROXIES
from .spaces import SPACES
from .strategies import STRATEGIES
from .zoo import ZOO, get_genotype

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit 2), as every other bad input gets."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def setup_logging(verbose: bool = False) -> None:
    """Log to stdout; under ``torchrun`` only rank 0 logs below WARNING."""
    level = logging.DEBUG if verbose else logging.INFO
    if int(os.environ.get("RANK", "0")) != 0:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)


def _one_line(e: BaseException) -> str:
    """An error's message as one line (an error raised in a data loader worker arrives wrapped in its traceback)."""
    text = str(e).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split()) or type(e).__name__


def run_main(fn, debug: bool = False) -> int:
    """Call ``fn()``. A :class:`DartsError` (anything the user gave: flags, files, data, plug-ins, the state of the
    file system) prints ``error: <message>`` on one line and exits 2; Ctrl-C exits 130. Anything else is a bug:
    one line saying where its traceback was written (the run's ``log.txt``), exit 1; ``debug``: the traceback."""
    try:
        fn()
        return 0
    except DartsError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last completed epoch's checkpoint is kept (continue with --resume RUN_DIR)",
              file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: loud, but one line unless --debug
        if debug:
            traceback.print_exc()
        where = getattr(e, "darts_log", None)
        told = f"the full traceback is in {where}" if where else "the run had not started its log"
        print(f"error: internal error {type(e).__name__}: {_one_line(e)[:300]} ({told}; --debug shows it here). "
              "Please report it.", file=sys.stderr)
        return 1


def _preload_plugins(argv) -> None:
    """Import the plug-ins a command line names before its parser is built, so their options are flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", default=None)
    pre.add_argument("--ops-module", dest="ops_module", default=None)
    known, _ = pre.parse_known_args(argv)
    load_plugins(known.plugin, known.ops_module)


def search_parser(prog: str = "darts-forge search") -> argparse.ArgumentParser:
    """The flags of a search: the general options, then each registered method's and space's own."""
    parser = _Parser(prog=prog, description="Run a differentiable architecture search: DARTS or a successor "
                     "(--method), in the DARTS or NAS-Bench-201 space (--space), on the embedded digits, CIFAR, an "
                     "ImageFolder tree, or random tensors; or a multi-trial search (--strategy) that scores discrete "
                     "cells with a benchmark table, a zero-cost proxy or short training (--evaluator).")
    add_flags(parser, general_specs(SearchConfig))
    for name, cls in METHODS.items():
        if cls.Options.__dataclass_fields__:
            add_flags(parser, method_specs(cls), f"--method {name}", cls.paper)
    for name, cls in SPACES.items():
        if cls.Options.__dataclass_fields__:
            add_flags(parser, space_specs(cls), f"--space {name}", cls.paper)
    for name, cls in STRATEGIES.items():
        if cls.Options.__dataclass_fields__:
            add_flags(parser, strategy_specs(cls), f"--strategy {name}", cls.paper)
    return parser


def retrain_parser(prog: str = "darts-forge retrain") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Retrain a cell from scratch: a search's genotype (--genotype) or a "
                     "published one (--arch NAME; --arch list lists them), with the DARTS paper's protocol.")
    add_flags(parser, general_specs(RetrainConfig))
    return parser


def search_main(argv=None, prog: str = "darts-forge search") -> int:
    """``darts-forge search`` (and ``train_search.py``)."""
    argv = sys.argv[1:] if argv is None else argv

    def go():
        _preload_plugins(argv)
        given = vars(search_parser(prog).parse_args(argv))
        search(**given)

    setup_logging()
    return run_main(go, debug="--debug" in argv)


def retrain_main(argv=None, prog: str = "darts-forge retrain") -> int:
    """``darts-forge retrain`` (and ``train_final.py``)."""
    argv = sys.argv[1:] if argv is None else argv

    def go():
        _preload_plugins(argv)
        given = vars(retrain_parser(prog).parse_args(argv))
        if given.get("arch") == "list":
            print_zoo()
            return
        retrain(**given)

    setup_logging()
    return run_main(go, debug="--debug" in argv)


def print_zoo(as_json: bool = False) -> None:
    """The published cells: name, reported CIFAR-10 test error, parameters, paper (``--json``: one object a line)."""
    if not as_json:
        print(f"{'name':16s} {'error':>7s} {'params':>7s}  paper")
    for name, entry in ZOO.items():
        if as_json:
            print(json.dumps({"name": name, "cifar_error": entry.cifar_error, "cifar_params_m": entry.cifar_params_m,
                              "paper": entry.paper, "source": entry.source, "genotype": entry.genotype.to_dict()}))
            continue
        err = f"{entry.cifar_error:.2f}%" if entry.cifar_error is not None else "-"
        params = f"{entry.cifar_params_m:.1f}M" if entry.cifar_params_m is not None else "-"
        print(f"{name:16s} {err:>7s} {params:>7s}  {entry.paper}")


def zoo_main(argv=None) -> int:
    parser = _Parser(prog="darts-forge zoo", description="List the published cells of the DARTS space (with "
                     "--show NAME: one cell's genotype).")
    parser.add_argument("--json", action="store_true", help="one JSON object per cell")
    parser.add_argument("--show", metavar="NAME", help="print one cell's genotype JSON")
    args = parser.parse_args(argv)

    def go():
        if args.show:
            print(get_genotype(args.show).to_json())
        else:
            print_zoo(args.json)

    return run_main(go)


def proxies_main(argv=None) -> int:
    """``darts-forge proxies``: zero-cost proxy scores of cells (genotype files, NB201 strings, published names)."""
    parser = _Parser(prog="darts-forge proxies", description="Score cells at initialisation with zero-cost proxies "
                     "(no training): each cell's discrete network, as --space's protocol builds it for --dataset, on "
                     "one batch of its training split. Prints one line per cell (--json: one object).")
    parser.add_argument("cells", nargs="*", metavar="CELL", help="genotype files, NAS-Bench-201 strings "
                        "('|nor_conv_3x3~0|+|...|') or published cell names (see darts-forge zoo)")
    parser.add_argument("--proxy", default="synflow,params,flops", metavar="NAME,NAME",
                        help=f"comma-separated proxies, of: {', '.join(PROXIES.list())} (default: %(default)s)")
    parser.add_argument("--dataset", default="synthetic", choices=("digits", "synthetic", "cifar10", "cifar100"),
                        help="the data set whose shape and batch are used (default: synthetic, CIFAR-shaped random "
                        "tensors; the data-independent proxies read only the shape)")
    parser.add_argument("--data", default=None, metavar="DIR", help="data directory (CIFAR)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples in the batch (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the networks' initialisation and the batch")
    parser.add_argument("--list", action="store_true", help="list the proxies with their papers")
    parser.add_argument("--json", action="store_true", help="one JSON object per cell")
    args = parser.parse_args(argv)

    def go():
        if args.list:
            for name, spec in PROXIES.items():
                print(f"{name:10s} {'(needs data) ' if spec.needs_data else ''}{spec.paper}")
            return
        if not args.cells:
            parser.error("give at least one CELL (or --list)")
        for row in score_cells(args.cells, [p for p in args.proxy.split(",") if p], dataset=args.dataset,
                               data=args.data, batch_size=args.batch_size, seed=args.seed):
            print(json.dumps(row) if args.json else
                  "  ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))

    return run_main(go)


def profile_main(argv=None) -> int:
    """``darts-forge profile``: the latency table of a space's ops on this device."""
    parser = _Parser(prog="darts-forge profile", description="Measure the latency of every candidate op of --space "
                     "at every position of its retraining network for --dataset (the space's protocol: channels, "
                     "cells, image size), on --device at --batch-size: warm-up, then the median of --repeats timings. "
                     "Writes the table --cost latency --cost-table FILE reads.")
    parser.add_argument("--space", default="darts", help="search space (default: %(default)s)")
    parser.add_argument("--dataset", default="digits", choices=("digits", "cifar10", "cifar100", "synthetic"),
                        help="whose network size and input shape (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per timed forward (default: %(default)s)")
    parser.add_argument("--primitives", default=None, metavar="OP,OP", help="ops to time (default: the space's)")
    parser.add_argument("--init-channels", type=int, default=None, help="override the protocol's channels")
    parser.add_argument("--layers", type=int, default=None, help="override the protocol's number of cells")
    parser.add_argument("--warmup", type=int, default=5, help="untimed passes first (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=20, help="timed passes; the median is kept (default: "
                        "%(default)s)")
    parser.add_argument("--calibrate", type=int, default=4, metavar="N", help="fit one scale of the ops' times on N "
                        "whole networks of random cells (0: none; default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the JSON table to write")
    parser.add_argument("--plugin", default=None, metavar="FILE", help="Python files or modules to import first")
    args = parser.parse_args(argv)

    def go():
        load_plugins(args.plugin, None)
        prims = tuple(p for p in args.primitives.split(",") if p) if args.primitives else None
        table = profile(args.space, dataset=args.dataset, batch_size=args.batch_size, device=args.device,
                        primitives=prims, init_channels=args.init_channels, layers=args.layers, warmup=args.warmup,
                        repeats=args.repeats, calibrate=args.calibrate, out=args.out,
                        progress=lambda i, n: log.info("position %d/%d timed", i, n))
        n = sum(len(rows) for rows in table.edges.values())
        log.info("latency table written to %s: %d edge positions x %d ops, fixed part %.3f ms, on %s (batch %d)",
                 args.out, n, len(next(iter(table.edges.values()))[0]), table.fixed, table.device.get("name"),
                 args.batch_size)

    setup_logging()
    return run_main(go)


def export_main(argv=None) -> int:
    """``darts-forge export RUN_DIR``: the retrained network for deployment."""
    parser = _Parser(prog="darts-forge export", description="Write a retraining run's network (eval mode, drop path "
                     "off, auxiliary head removed; its output is the logits) as ONNX, TorchScript or a torch.export "
                     "program, with a sidecar JSON beside it (genotype, input shape, classes, preprocessing).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a darts-forge retrain run directory")
    parser.add_argument("--format", default="onnx", choices=tuple(FORMATS), help="(default: %(default)s)")
    parser.add_argument("--out", default=None, metavar="DIR", help="where to write (default: RUN_DIR/export)")
    parser.add_argument("--batch-size", type=int, default=1, help="the example input's batch (ONNX: the batch "
                        "axis stays dynamic)")
    args = parser.parse_args(argv)

    def go():
        info = export_run(args.run_dir, args.format, args.out, args.batch_size)
        log.info("exported %s (%s, input %s) with %s", info["path"], args.format, info["input_shape"],
                 info["sidecar"])

    setup_logging()
    return run_main(go)


COMMANDS = {
    "search": (search_main, "run a search (one-shot, or multi-trial with --strategy)"),
    "retrain": (retrain_main, "retrain a cell from scratch"),
    "plot": (None, "draw a genotype's cells"),
    "zoo": (zoo_main, "list the published cells"),
    "proxies": (proxies_main, "score cells with zero-cost proxies, without training"),
    "profile": (profile_main, "measure the latency of a space's ops on this device"),
    "export": (export_main, "export a retrained network (ONNX, TorchScript, torch.export)"),
}


def main(argv=None) -> int:
    """``darts-forge COMMAND [flags]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = [f"  {name:8s} {help}" for name, (_, help) in COMMANDS.items()]
        print("usage: darts-forge {search,retrain,plot,zoo,proxies,profile,export} [flags]\n\n"
              "Differentiable architecture search (DARTS and its successors) on current PyTorch.\n\n"
              "commands:\n" + "\n".join(lines) + "\n\n`darts-forge COMMAND --help` lists a command's flags.")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"darts-forge {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        print(f"error: unknown command {command!r}{hint} Commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if command == "plot":
        return plot_main(rest, prog="darts-forge plot")
    return COMMANDS[command][0](rest)


if __name__ == "__main__":
    sys.exit(main())
