"""Our parameter and multiply-add counts for every published cell beside the figures its paper reported.

    python benchmarks/published_cells.py            # a table (CIFAR-10 and ImageNet settings)
    python benchmarks/published_cells.py --json     # one JSON object per line
    python benchmarks/published_cells.py --retrain DARTS_V2 -- --data ~/data --download

Settings: cifar = NetworkCIFAR(C=36, 20 cells, 10 classes) at 32x32; imagenet = NetworkImageNet(C=48, 14 cells,
1000 classes) at 224x224. Parameters exclude the auxiliary head (as the papers count them); multiply-adds are
Conv2d + Linear only (see darts.counting.count_macs), so they sit below the published ImageNet figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # runnable as `python benchmarks/published_cells.py` from a checkout
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402

from darts.counting import count_macs, count_parameters  # noqa: E402
from darts.errors import DartsError  # noqa: E402
from darts.final import NetworkCIFAR, NetworkImageNet  # noqa: E402
from darts.zoo import ZOO, ZooEntry, get_entry  # noqa: E402

#: setting -> (network factory, input size (C, H, W))
SETTINGS = {
    "cifar": (lambda g: NetworkCIFAR(36, 10, 20, True, g), (3, 32, 32)),
    "imagenet": (lambda g: NetworkImageNet(48, 1000, 14, True, g), (3, 224, 224)),
}


def measure(entry: ZooEntry, setting: str) -> dict:
    """Build the network of ``setting`` for ``entry`` and count it; returns one result row."""
    build, input_size = SETTINGS[setting]
    t0 = time.perf_counter()
    model = build(entry.genotype)
    params = count_parameters(model)
    macs = count_macs(model, input_size)
    if setting == "cifar":  # the papers give no CIFAR multiply-adds
        paper_params, paper_macs, paper_error = entry.cifar_params_m, None, entry.cifar_error
    else:
        paper_params, paper_macs = entry.imagenet_params_m, entry.imagenet_macs_m
        paper_error = entry.imagenet_top1_error
    return {
        "name": entry.name,
        "setting": setting,
        "params": params,
        "macs": macs,
        "paper_params_m": paper_params,
        "paper_macs_m": paper_macs,
        "paper_error": paper_error,
        "params_diff_m": None if paper_params is None else round(params / 1e6 - paper_params, 3),
        "macs_diff_m": None if paper_macs is None else round(macs / 1e6 - paper_macs, 1),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    header = (f"{'cell':<15} {'setting':<8} {'params M':>8} {'paper':>6} {'diff':>7}  {'MACs M':>7} {'paper':>6} "
              f"{'diff':>7}  {'paper err %':>11}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<15} {r['setting']:<8} {r['params'] / 1e6:>8.3f} {_fmt(r['paper_params_m'], '.1f'):>6} "
            f"{_fmt(r['params_diff_m'], '+.3f'):>7}  {r['macs'] / 1e6:>7.1f} {_fmt(r['paper_macs_m'], '.0f'):>6} "
            f"{_fmt(r['macs_diff_m'], '+.1f'):>7}  {_fmt(r['paper_error'], '.2f'):>11}",
            flush=True,
        )


def retrain(name: str, extra: list[str]) -> int:
    """Run ``train_final.py --arch NAME --dataset cifar10`` (the paper's CIFAR-10 protocol; needs a GPU and
    CIFAR-10, e.g. ``-- --data DIR --download``)."""
    name = get_entry(name).name
    script = os.path.join(REPO_ROOT, "train_final.py")
    cmd = [sys.executable, script, "--arch", name, "--dataset", "cifar10", *extra]
    print(" ".join(cmd), flush=True)
    if not os.path.isfile(script):
        print(f"error: {script} does not exist", file=sys.stderr)
        return 2
    return subprocess.run(cmd, cwd=REPO_ROOT).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument("--settings", default="cifar,imagenet", help="comma-separated subset of cifar,imagenet")
    parser.add_argument("--names", default=None, help="comma-separated subset of the zoo (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is fastest on a busy machine)")
    parser.add_argument("--retrain", metavar="NAME", help="retrain a published cell with train_final.py; "
                        "arguments after -- are passed on")
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if extra and not args.retrain:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.retrain:
            return retrain(args.retrain, extra)
        settings = [s.strip() for s in args.settings.split(",") if s.strip()]
        unknown = [s for s in settings if s not in SETTINGS]
        if unknown:
            parser.error(f"unknown setting(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
        names = [get_entry(n).name for n in args.names.split(",")] if args.names else list(ZOO)
    except DartsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    for setting in settings:
        for name in names:
            row = measure(ZOO[name], setting)
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    if not args.json:
        print_table(rows)
    # timing goes to stderr so that --json output stays one object per line
    print(f"# {len(rows)} networks counted in {time.perf_counter() - t0:.1f} s "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
