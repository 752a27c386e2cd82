#!/usr/bin/env python
"""Time one search epoch of every method (and the NAS-Bench-201 space) on the embedded digits set, and show the
cell each one found.

Each run is ``train_search.py --method M --epochs 1`` with the digits defaults (8 channels, 5 cells, batch 64),
in its own process, one after another; the time is the epoch's wall time from ``metrics.jsonl`` (α steps,
weight steps and the end-of-epoch evaluation).

    python benchmarks/methods_digits.py                 # every method, then nb201 with darts
    python benchmarks/methods_digits.py --methods darts,gdas --json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(method: str, space: str, extra: list[str], workdir: str) -> dict:
    out = os.path.join(workdir, f"{space}-{method}")
    cmd = [sys.executable, os.path.join(ROOT, "train_search.py"), "--method", method, "--space", space,
           "--epochs", "1", "--no-progress", "--out", out, *extra]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        return dict(method=method, space=space, error=(p.stderr.strip().splitlines() or ["?"])[-1])
    rec = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))][-1]
    g = json.load(open(os.path.join(out, "genotype.json")))
    cell = g["arch"] if space == "nb201" else str(_genotype(g))
    return dict(method=method, space=space, epoch_time_s=rec["epoch_time_s"], val_acc=rec["val_acc"],
                param_free_normal=rec["param_free_normal"], cell=cell)


def _genotype(d):
    sys.path.insert(0, ROOT)
    from darts.genotype import Genotype

    return Genotype.from_dict(d)


def main(argv=None) -> int:
    sys.path.insert(0, ROOT)
    from darts.methods import list_methods

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(list_methods()), help="comma list (default: all registered)")
    ap.add_argument("--spaces", default="darts,nb201", help="comma list; nb201 runs with --method darts only")
    ap.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    ap.add_argument("extra", nargs="*", help="more train_search.py flags, after --")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for space in args.spaces.split(","):
            for method in (args.methods.split(",") if space == "darts" else ["darts"]):
                r = run_one(method, space, args.extra, tmp)
                rows.append(r)
                if args.json:
                    print(json.dumps(r), flush=True)
    if not args.json:
        print(f"{'method':<11}{'space':<7}{'s/epoch':>9}{'val acc':>9}{'param-free':>12}  cell")
        for r in rows:
            if "error" in r:
                print(f"{r['method']:<11}{r['space']:<7}  failed: {r['error']}")
            else:
                print(f"{r['method']:<11}{r['space']:<7}{r['epoch_time_s']:>9.1f}{100 * r['val_acc']:>8.1f}%"
                      f"{r['param_free_normal']:>12}  {r['cell']}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
