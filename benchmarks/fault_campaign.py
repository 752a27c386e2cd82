#!/usr/bin/env python
"""A fault campaign: kill a tiny search with SIGKILL at random moments, resume it each time, and check that it ends
bitwise identical to an uninterrupted run (model, α, optimizers' effect, metrics, genotype).

    python benchmarks/fault_campaign.py --runs 5 --kills 3 [--json]

Each kill is drawn uniformly over the time the uninterrupted run would need for the epochs still to do; a kill
"landed mid-run" when the process was still alive with epochs left. The table gives, per run, the kills, those that landed mid-run, and whether the final
state equals the reference's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--init-channels", "4", "--layers", "3", "--nodes", "2", "--batch-size", "128", "--no-progress"]


def search(args, out, stderr=subprocess.DEVNULL):
    # one thread in every process: results are bitwise reproducible at a fixed thread count
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train_search.py"), *args, "--out", out], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def epochs_done(out) -> int:
    path = os.path.join(out, "metrics.jsonl")
    return sum(1 for ln in open(path) if ln.strip()) if os.path.exists(path) else 0


def final_state(out):
    state = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    metrics = [json.loads(ln) for ln in open(os.path.join(out, "metrics.jsonl"))]
    for m in metrics:
        m.pop("epoch_time_s", None)  # wall time is the one thing that differs
    return state["model"], metrics, json.load(open(os.path.join(out, "genotype.json")))


def identical(a, b) -> bool:
    (ma, ra, ga), (mb, rb, gb) = a, b
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma) and ra == rb and ga == gb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="killed runs (each against one uninterrupted reference)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per run")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the tiny digits search")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--json", action="store_true", help="one JSON object per run, then the totals")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    search_args = [*TINY, "--epochs", str(args.epochs)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "reference")
        t0 = time.time()
        assert search(search_args, ref).wait() == 0, "the uninterrupted run failed"
        duration = time.time() - t0
        reference = final_state(ref)
        for r in range(args.runs):
            out = os.path.join(tmp, f"killed{r}")
            landed, cmd = 0, search_args
            for _ in range(args.kills):
                left = (args.epochs - epochs_done(out)) / args.epochs
                p = search(cmd, out)
                time.sleep(rng.uniform(0.0, duration * max(left, 0.1)))
                alive = p.poll() is None
                before = epochs_done(out)
                if alive:
                    p.send_signal(signal.SIGKILL)
                p.wait()
                landed += alive and before < args.epochs
                if os.path.exists(os.path.join(out, "config.json")):
                    cmd = ["--resume", out, "--no-progress"]
            finished = search(cmd, out).wait() == 0  # the same environment as the reference (threads change bits)
            same = finished and identical(final_state(out), reference)
            rows.append({"run": r + 1, "kills": args.kills, "landed_mid_run": landed, "identical": same})
            if not args.json:
                print(f"run {r + 1}: {args.kills} kills, {landed} landed mid-run, identical to the uninterrupted "
                      f"run: {same}", flush=True)
    totals = {"runs": len(rows), "kills": sum(x["kills"] for x in rows),
              "landed_mid_run": sum(x["landed_mid_run"] for x in rows),
              "identical_runs": sum(x["identical"] for x in rows), "reference_seconds": round(duration, 1)}
    if args.json:
        for row in rows:
            print(json.dumps(row))
        print(json.dumps({"totals": totals}))
    else:
        print(f"{'runs':>5s} {'kills':>6s} {'mid-run':>8s} {'identical':>10s}")
        print(f"{totals['runs']:5d} {totals['kills']:6d} {totals['landed_mid_run']:8d} {totals['identical_runs']:10d}")
    return 0 if totals["identical_runs"] == totals["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
