#!/usr/bin/env python
"""Every search method, and DARTS with DARTS-PT's selection, on the same digits budget over several seeds, in both
spaces: seconds per epoch, the supernet's validation accuracy (a sampling method's: its epoch cell's, with batch
statistics, ``path_val_acc``), the parameter-free ops of the normal cell (DARTS space), and for NAS-Bench-201 cells
the benchmark's CIFAR-10 test accuracy of the cell found (12-epoch table in ``../shared/nb201/``). The cells are searched on digits: the CIFAR-10 column says how good a cell the method picks
in the benchmark's space, not how it would do searching on CIFAR-10.

Each run is ``train_search.py --method M --space S --seed N --epochs E`` with the digits defaults (8 channels,
batch 64; the methods' small presets), in its own process, one after another; seconds per epoch come from
``metrics.jsonl`` (the epoch's steps and evaluation; a method's final choice after the last epoch, e.g. SPOS's
evolution, is in ``total_s``).

    python benchmarks/methods_digits.py                       # all methods, both spaces, 3 seeds, 2 epochs
    python benchmarks/methods_digits.py --methods darts,enas --spaces nb201 --seeds 1 --json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(ROOT, "..", "shared", "nb201", "nb201_12epoch.csv")
VARIANTS = {"darts-pt": ["--method", "darts", "--selection", "pt"]}  # a selection rule, not a method


def run_one(method: str, space: str, seed: int, epochs: int, extra: list[str], workdir: str, table) -> dict:
    out = os.path.join(workdir, f"{space}-{method}-{seed}")
    how = VARIANTS.get(method, ["--method", method])
    cmd = [sys.executable, os.path.join(ROOT, "train_search.py"), *how, "--space", space, "--seed", str(seed),
           "--epochs", str(epochs), "--no-progress", "--out", out, *extra]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    total = time.time() - t0
    row = dict(method=method, space=space, seed=seed)
    if p.returncode:
        return dict(row, error=(p.stderr.strip().splitlines() or ["?"])[-1])
    recs = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    g = json.load(open(os.path.join(out, "genotype.json")))
    # a sampling method's cell is scored with batch statistics (the running ones mix every path it trained)
    row.update(epoch_time_s=statistics.mean(r["epoch_time_s"] for r in recs), total_s=round(total, 1),
               val_acc=recs[-1].get("path_val_acc", recs[-1]["val_acc"]))
    if space == "nb201":
        row["cell"] = g["arch"]
        rec = table.query(g["arch"]) if table is not None else None
        row["nb201_cifar10_test"] = rec.accuracy["cifar10"]["test"] if rec is not None else None
    else:
        from darts.genotype import Genotype
        from darts.search_run import parameter_free_count

        cell = Genotype.from_dict(g)
        row.update(cell=str(cell), param_free_normal=parameter_free_count(cell))
    return row


def _mean_sd(values, scale=1.0, digits=1) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def table_rows(rows) -> list[str]:
    out = [f"| method | space | s/epoch | total s | supernet val acc % | param-free ops (normal) | "
           f"NB201 CIFAR-10 test % (12-epoch table; searched on digits) |", "|---|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        if (r["method"], r["space"]) not in keys:
            keys.append((r["method"], r["space"]))
    for method, space in keys:
        rs = [r for r in rows if (r["method"], r["space"]) == (method, space)]
        bad = [r for r in rs if "error" in r]
        if bad:
            out.append(f"| {method} | {space} | failed: {bad[0]['error']} | | | | |")
            continue
        pf = _mean_sd([r.get("param_free_normal") for r in rs]) if space == "darts" else "-"
        nb = _mean_sd([r.get("nb201_cifar10_test") for r in rs], digits=2) if space == "nb201" else "-"
        out.append(f"| {method} | {space} | {_mean_sd([r['epoch_time_s'] for r in rs])} | "
                   f"{_mean_sd([r['total_s'] for r in rs])} | {_mean_sd([r['val_acc'] for r in rs], 100)} | {pf} | "
                   f"{nb} |")
    return out


def main(argv=None) -> int:
    sys.path.insert(0, ROOT)
    from darts.benchmarks import NB201Table
    from darts.methods import list_methods

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join([*list_methods(), "darts-pt"]),
                    help="comma list (default: every registered method, and darts-pt)")
    ap.add_argument("--spaces", default="darts,nb201", help="comma list (default: darts,nb201)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of every run (default 3)")
    ap.add_argument("--epochs", type=int, default=2, help="search epochs of every run (default 2)")
    ap.add_argument("--json", action="store_true", help="one JSON object per run, then none of the table")
    ap.add_argument("extra", nargs="*", help="more train_search.py flags, after --")
    args = ap.parse_args(argv)
    table = NB201Table(TABLE) if os.path.exists(TABLE) else None
    if table is None and "nb201" in args.spaces:
        print(f"note: {TABLE} is absent: the NAS-Bench-201 column stays empty", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for space in args.spaces.split(","):
            for method in args.methods.split(","):
                for seed in range(args.seeds):
                    r = run_one(method, space, seed, args.epochs, args.extra, tmp, table)
                    rows.append(r)
                    if args.json:
                        print(json.dumps(r), flush=True)
    if not args.json:
        print("\n".join(table_rows(rows)))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
