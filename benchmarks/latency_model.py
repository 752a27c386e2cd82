#!/usr/bin/env python
"""How good is the latency model? Profile every op of the DARTS space on this device (``darts.profile``), then
measure the retraining networks of 20 cells (the zoo's four-node DARTS-space cells and random ones) end to end and
compare with the table's prediction (fixed part + the cell's ops), at batch 1 and batch 32. The table's one
calibration factor is fitted on random cells of another seed than the 20 compared here.

    python benchmarks/latency_model.py                      # CIFAR shape, 16 channels, 8 cells
    python benchmarks/latency_model.py --batch-sizes 1 --json
    python benchmarks/latency_model.py --searches           # + digits searches with and without a FLOPs target

The goal is a mean relative error under 10% at both batch sizes. Timings are medians of ``--repeats`` passes after
``--warmup``; run it on an otherwise idle machine.
"""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cells(n: int, seed: int = 0):
    from darts.spaces import get_space
    from darts.zoo import ZOO

    space = get_space("darts")
    out = [(name, ZOO[name].genotype) for name in ZOO.list()
           if len(ZOO[name].genotype.normal) == 8 and not ZOO[name].genotype.sparse
           and set(op for op, _ in ZOO[name].genotype.normal + ZOO[name].genotype.reduce) <= set(space.primitives)]
    enc = space.encoding(space.primitives)
    rng = random.Random(seed)
    while len(out) < n:
        out.append((f"random-{len(out)}", enc.decode(enc.random(rng))))
    return out[:n]


def latency_rows(args):
    import darts
    from darts.config import network_settings
    from darts.costs import measure_latency
    from darts.spaces import get_space

    space = get_space("darts")
    ncfg = network_settings(space, args.dataset)
    ncfg.init_channels, ncfg.layers, ncfg.auxiliary = args.init_channels, args.layers, False
    classes, channels, size = {"cifar10": (10, 3, 32), "digits": (10, 1, 8)}[args.dataset]
    rows = []
    for batch in args.batch_sizes:
        t0 = time.time()
        table = darts.profile("darts", dataset=args.dataset, batch_size=batch, init_channels=args.init_channels,
                              layers=args.layers, warmup=args.warmup, repeats=args.repeats)
        profiled = time.time() - t0
        errors = []
        for name, g in cells(args.cells):
            net = space.build_network(g, ncfg, classes, channels, size)
            measured = measure_latency(net, (batch, channels, size, size), warmup=args.warmup, repeats=args.repeats)
            predicted = table.cell_cost(space, g)
            err = abs(predicted - measured) / measured
            errors.append(err)
            rows.append(dict(kind="cell", batch_size=batch, cell=name, predicted_ms=round(predicted, 3),
                             measured_ms=round(measured, 3), relative_error=round(err, 4)))
        rows.append(dict(kind="summary", batch_size=batch, cells=len(errors), mean_relative_error=statistics.mean(
            errors), worst_relative_error=max(errors), profile_seconds=round(profiled, 1),
            device=table.device.get("name"), threads=table.device.get("threads"),
            calibration_scale=round(table.device.get("calibration", {}).get("scale", 1.0), 4),
            network=f"{args.dataset} shape, {args.init_channels} channels, {args.layers} cells"))
    return rows


def search_rows(args, workdir):
    """The same digits search with and without a FLOPs target: predicted and counted FLOPs, measured latency."""
    import darts
    from darts.config import network_settings
    from darts.costs import analytic_table, measure_latency
    from darts.spaces import get_space

    space = get_space("darts")
    ncfg = network_settings(space, "digits")
    table = analytic_table(space, "flops", ncfg, space.primitives, 10, 1, 8)
    rows = []
    common = dict(epochs=args.search_epochs, seed=2, progress=False, cost="flops")
    free = darts.search(out=os.path.join(workdir, "free"), **common)
    cheapest = table.cell_cost(space, space.cheapest_topology(free.genotype, table))
    target = args.target or (cheapest + free.metrics[-1]["cost_predicted"]) / 2
    bound = darts.search(out=os.path.join(workdir, "bound"), cost_target=target, **common)
    for label, r in (("no target", free), (f"--cost-target {target:.0f}", bound)):
        net = space.build_network(r.genotype, ncfg, 10, 1, 8)
        rec = r.metrics[-1]
        rows.append(dict(kind="search", search=label, flops_predicted=rec["cost_predicted"],
                         flops_counted=rec["cost_measured"],
                         latency_ms_batch1=round(measure_latency(net, (1, 1, 8, 8), repeats=args.repeats), 3),
                         latency_ms_batch32=round(measure_latency(net, (32, 1, 8, 8), repeats=args.repeats), 3),
                         genotype=str(r.genotype)))
    return rows


def main(argv=None) -> int:
    sys.path.insert(0, ROOT)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default="1,32", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--dataset", default="cifar10", choices=("cifar10", "digits"), help="the input shape")
    ap.add_argument("--init-channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--searches", action="store_true", help="also the digits searches with and without a target")
    ap.add_argument("--search-epochs", type=int, default=6)
    ap.add_argument("--target", type=float, default=None, help="the FLOPs target (default: halfway between the "
                    "cheapest cell and the unconstrained search's)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    rows = [] if args.skip_latency else latency_rows(args)
    if args.searches:
        with tempfile.TemporaryDirectory() as tmp:
            rows += search_rows(args, tmp)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    for r in rows:
        if r["kind"] == "cell":
            print(f"batch {r['batch_size']:3d}  {r['cell']:16s} predicted {r['predicted_ms']:9.3f} ms  measured "
                  f"{r['measured_ms']:9.3f} ms  error {100 * r['relative_error']:5.1f}%")
        elif r["kind"] == "summary":
            print(f"batch {r['batch_size']}: mean relative error {100 * r['mean_relative_error']:.1f}%, worst "
                  f"{100 * r['worst_relative_error']:.1f}% over {r['cells']} cells ({r['network']}; {r['device']}, "
                  f"{r['threads']} threads; calibration scale {r['calibration_scale']}; profiling took "
                  f"{r['profile_seconds']} s)")
        else:
            print(f"{r['search']:24s} FLOPs predicted {r['flops_predicted']:.0f}, counted {r['flops_counted']:.0f}; "
                  f"latency {r['latency_ms_batch1']} ms (batch 1), {r['latency_ms_batch32']} ms (batch 32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
