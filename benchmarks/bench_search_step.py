#!/usr/bin/env python
"""Time one full DARTS search step (α step + weight step) of the supernet, per ``--kernels`` setting.

The paper's setting: C=16, 8 cells, 4 nodes, 10 classes, random 32x32 images, SGD (lr 0.025, momentum 0.9,
weight decay 3e-4, clip 5) for the weights and Adam (3e-4, betas (0.5, 0.999), weight decay 1e-3) for α, through
:class:`darts.bilevel.BilevelOptimizer`. Every option takes a comma list; each configuration of the grid runs in
its own process, so its peak memory is its own (peak RSS on CPU, ``torch.cuda.max_memory_allocated`` on CUDA).
The table compares every row with the ``reference`` row of the same order, batch and device.

    python benchmarks/bench_search_step.py --order first,second --batch 32 --kernels reference,auto
    python benchmarks/bench_search_step.py --device cuda --batch 64 --kernels reference,triton --json

On a machine whose speed drifts (a shared VM), ``--rounds N`` runs the whole grid N times, one configuration after
the other in each round, so a slow minute falls on every configuration alike; each row then reports the median
of all its timed steps and the highest peak, and ``--json`` adds the per-round medians.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(cfg: dict) -> dict:
    """Build the supernet and time ``cfg['steps']`` bilevel steps after ``cfg['warmup']``; runs in the child."""
    sys.path.insert(0, ROOT)
    import torch
    import torch.nn as nn

    from darts.bilevel import BilevelOptimizer
    from darts.ops import DARTS_PRIMITIVES
    from darts.spaces import Supernet

    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    torch.manual_seed(0)
    model = Supernet(16, 10, 8, DARTS_PRIMITIVES, steps=4, multiplier=4, kernels=cfg["kernels"]).to(device)
    impl = model.set_kernels(cfg["kernels"], device)
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    bo = BilevelOptimizer(model, nn.CrossEntropyLoss(), w_opt, a_opt, cfg["order"], cfg["hvp"], grad_clip=5.0)
    B = cfg["batch"]
    data = [(torch.randn(B, 3, 32, 32, device=device), torch.randint(0, 10, (B,), device=device)) for _ in range(2)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(cfg["warmup"] + cfg["steps"]):
        sync()
        t0 = time.perf_counter()
        bo.step(data[0], data[1], 0.025)
        sync()
        if i >= cfg["warmup"]:
            times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    from kernels import cpu_ext

    compiled = impl == "fused_cpu" and device.type == "cpu" and cpu_ext.load() is not None
    return dict(cfg, impl=impl, compiled_cpu_kernels=compiled, median_s_per_step=statistics.median(times), times=times,
                images_per_s=B / statistics.median(times), peak_mem_mb=peak, threads=torch.get_num_threads(),
                ld_preload=os.environ.get("LD_PRELOAD", ""))


def _grid(args):
    for order in args.order.split(","):
        for batch in args.batch.split(","):
            for device in args.device.split(","):
                for kernels in args.kernels.split(","):
                    yield dict(order=order, batch=int(batch), kernels=kernels, device=device, hvp=args.hvp,
                               warmup=args.warmup, steps=args.steps, threads=args.threads)


def _merge(results: list[dict]) -> dict:
    """One row from a configuration's rounds: the median of all timed steps, the highest peak memory."""
    if len(results) == 1 or any("error" in r for r in results):
        return next((r for r in results if "error" in r), results[0])
    times = [t for r in results for t in r["times"]]
    row = dict(results[0], times=times, median_s_per_step=statistics.median(times),
               peak_mem_mb=max(r["peak_mem_mb"] for r in results),
               round_medians=[r["median_s_per_step"] for r in results])
    row["images_per_s"] = row["batch"] / row["median_s_per_step"]
    return row


def _table(rows) -> str:
    ref = {(r["order"], r["batch"], r["device"]): r for r in rows if r.get("impl") == "reference"}
    head = f"{'order':<7}{'batch':>6}  {'kernels':<22}{'device':<7}{'s/step':>9}{'img/s':>8}{'peak MB':>9}" \
           f"{'speed-up':>10}{'mem ratio':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['order']:<7}{r['batch']:>6}  {r['kernels']:<22}{r['device']:<7}  failed: {r['error']}")
            continue
        base = ref.get((r["order"], r["batch"], r["device"]))
        speed = f"{base['median_s_per_step'] / r['median_s_per_step']:.2f}x" if base else "-"
        mem = f"{r['peak_mem_mb'] / base['peak_mem_mb']:.2f}" if base else "-"
        name = r["kernels"] if r["kernels"] == r["impl"] else f"{r['kernels']}->{r['impl']}"
        name += "+c++" if r.get("compiled_cpu_kernels") else ""
        lines.append(f"{r['order']:<7}{r['batch']:>6}  {name:<22}{r['device']:<7}{r['median_s_per_step']:>9.3f}"
                     f"{r['images_per_s']:>8.1f}{r['peak_mem_mb']:>9.0f}{speed:>10}{mem:>11}")
    preload = sorted({r["ld_preload"] for r in rows if r.get("ld_preload")})
    if preload:  # e.g. jemalloc: it changes both paths' times and memory, the reference's most (README)
        lines.append(f"note: LD_PRELOAD={','.join(preload)}; figures are not comparable with the default allocator's")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--order", default="first,second", help="first, second or both (comma list)")
    p.add_argument("--batch", default="32", help="batch sizes (comma list)")
    p.add_argument("--kernels", default="reference,auto", help="kernels settings (comma list)")
    p.add_argument("--device", default="cpu", help="devices (comma list)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    p.add_argument("--hvp", default="finite-difference", choices=("finite-difference", "exact"))
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the whole grid this many times, interleaved; rows merge all rounds' steps")
    p.add_argument("--json", action="store_true", help="one JSON object per configuration instead of the table")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(json.loads(args.child))))
        return 0
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    grid = list(_grid(args))
    runs = [[] for _ in grid]  # per configuration, one result per round
    for rnd in range(args.rounds):
        for cfg, results in zip(grid, runs):
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)],
                               capture_output=True, text=True)
            if r.returncode == 0:
                row = json.loads(r.stdout.strip().splitlines()[-1])
            else:  # e.g. --kernels triton without CUDA: the one-line error of the dispatch
                row = dict(cfg, error=(r.stderr.strip().splitlines() or ["?"])[-1][:120])
            results.append(row)
            if args.json and args.rounds == 1:
                print(json.dumps(row), flush=True)
            else:  # progress on stderr; stdout keeps the table or the JSON rows
                print(f"  done: round {rnd + 1}/{args.rounds} {cfg['order']} batch {cfg['batch']} {cfg['kernels']} "
                      f"{cfg['device']}", file=sys.stderr, flush=True)
    rows = [_merge(results) for results in runs]
    if args.json and args.rounds > 1:
        for row in rows:
            print(json.dumps(row), flush=True)
    elif not args.json:
        print(_table(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
