#!/usr/bin/env python
"""NAS-Bench-201 as a benchmark of search strategies and zero-cost proxies, offline, on the shared tables.

1. Every multi-trial strategy with the table evaluator, ``--seeds`` seeds and ``--budget`` evaluations per data set:
   each run optimises the cell's 12-epoch validation accuracy on that data set (the NAS-Bench-201 paper's protocol)
   and the found cell's test accuracy is looked up; printed as mean ± std beside the table's optimum.
2. The one-shot methods, each searched on the embedded digits set with ``--space nb201`` (``--one-shot-epochs``),
   their derived cells looked up in the table: searched on digits, not on CIFAR, so a check that the pipeline works
   end to end, not a comparison with the papers.
3. Each proxy's Spearman ρ against the 200-epoch validation accuracy of NAS-Bench-Suite-Zero's 724-725 cells per
   data set, ours beside theirs, and between our scores and theirs. The data-independent proxies (synflow, params,
   flops) are computed here; the others need batches of the real data set (``--cifar10 DIR``), else only the
   reference figure is printed.

    python benchmarks/nb201_strategies.py                       # all three, tables
    python benchmarks/nb201_strategies.py --json --skip-one-shot
    python benchmarks/nb201_strategies.py --whole-space          # + a synflow search of all 15,625 cells, timed
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "nb201")
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
#: the data sets' shapes: (classes, input size), as the benchmark trains them
SHAPES = {"cifar10": (10, 32), "cifar100": (100, 32), "ImageNet16-120": (120, 16)}


def strategy_rows(table_path, strategies, seeds, budget, workdir):
    import darts
    from darts.benchmarks import NB201Table

    table = NB201Table(table_path)
    rows = []
    for ds in DATASETS:
        best = table.best(ds, "test")
        rows.append(dict(strategy="optimum", dataset=ds, mean_test_accuracy=best.accuracy[ds]["test"],
                         std_test_accuracy=0.0, seeds=0, budget_evals=0, arch=best.arch))
        for name in strategies:
            found, t0 = [], time.time()
            for seed in range(seeds):
                r = darts.search(space="nb201", strategy=name, evaluator="table", nb201_table=table_path,
                                 nb201_dataset=ds, budget_evals=budget, seed=seed, progress=False,
                                 out=os.path.join(workdir, f"{name}-{ds}-{seed}"))
                found.append(table.accuracy(r.genotype, ds, "test"))
            rows.append(dict(strategy=name, dataset=ds, mean_test_accuracy=statistics.mean(found),
                             std_test_accuracy=statistics.stdev(found) if len(found) > 1 else 0.0, seeds=seeds,
                             budget_evals=budget, seconds_per_run=round((time.time() - t0) / seeds, 3)))
    return rows


def one_shot_rows(table_path, epochs, workdir):
    import darts
    from darts.benchmarks import NB201Table
    from darts.methods import list_methods

    table = NB201Table(table_path)
    rows = []
    for method in list_methods():
        t0 = time.time()
        try:
            r = darts.search(space="nb201", method=method, epochs=epochs, progress=False,
                             out=os.path.join(workdir, f"oneshot-{method}"))
        except darts.DartsError as e:
            rows.append(dict(method=method, searched_on="digits", error=str(e)))
            continue
        rec = table.query(r.genotype)
        rows.append(dict(method=method, searched_on="digits", epochs=epochs, arch=str(r.genotype),
                         cifar10_test_accuracy=rec.accuracy["cifar10"]["test"] if rec else None,
                         seconds=round(time.time() - t0, 1)))
    return rows


def proxy_rows(zero_cost_path, cifar10_dir=None):
    import torch
    from scipy.stats import spearmanr

    from darts.counting import count_flops
    from darts.final import count_parameters
    from darts.proxies import PROXIES, score
    from darts.spaces.nb201 import NB201Genotype, NB201Network

    data = json.load(open(zero_cost_path))
    torch.set_num_threads(1)
    batch = None
    if cifar10_dir:
        from darts.data import load_data

        bundle = load_data("cifar10", cifar10_dir, augment=False)
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(bundle.train), generator=g)[:64].tolist()
        xs, ys = zip(*(bundle.train[i] for i in idx))
        batch = (torch.stack(xs), torch.as_tensor(ys))
    rows = []
    for ds in DATASETS:
        cells = data[ds]
        classes, size = SHAPES[ds]
        acc = [c["val_accuracy"] for c in cells]
        for proxy in ("synflow", "params", "flops", "snip", "grad_norm", "grasp", "fisher", "jacov", "nwot",
                      "plain"):
            theirs = [c[proxy] for c in cells]
            row = dict(proxy=proxy, dataset=ds, cells=len(cells),
                       reference_spearman_vs_accuracy=round(spearmanr(theirs, acc)[0], 4),
                       spearman_vs_accuracy=None, spearman_vs_reference_scores=None)
            data_free = not PROXIES.get(proxy).needs_data
            if data_free or (batch is not None and ds == "cifar10"):
                t0, ours = time.time(), []
                for i, c in enumerate(cells):
                    torch.manual_seed(i)
                    net = NB201Network(NB201Genotype.from_string(c["arch"]), 16, 5, classes)
                    if proxy == "params":
                        ours.append(count_parameters(net) / 1e6)
                    elif proxy == "flops":
                        ours.append(count_flops(net, (3, size, size)) / 1e6)
                    elif data_free:
                        ours.append(score(net, proxy, input_size=(3, size, size), copy=False))
                    else:
                        ours.append(score(net, proxy, batch, copy=False))
                row.update(spearman_vs_accuracy=round(spearmanr(ours, acc)[0], 4),
                           spearman_vs_reference_scores=round(spearmanr(ours, theirs)[0], 4),
                           seconds=round(time.time() - t0, 1))
                if proxy in ("params", "flops"):
                    row["max_abs_difference"] = max(abs(a - b) for a, b in zip(ours, theirs))
            else:
                row["note"] = f"needs batches of {ds} (--cifar10 DIR); not on this machine"
            rows.append(row)
    return rows


def whole_space(table_path, workdir):
    import darts
    from darts.benchmarks import NB201Table

    t0 = time.time()
    r = darts.search(space="nb201", strategy="grid", evaluator="proxy", proxy="synflow", dataset="synthetic",
                     budget_evals=15625, progress=False, out=os.path.join(workdir, "whole-space-synflow"))
    seconds = time.time() - t0
    rec = NB201Table(table_path).query(r.genotype)
    return dict(search="grid over all 15,625 cells, evaluator proxy synflow (CIFAR-shaped input)",
                seconds=round(seconds, 1), arch=str(r.genotype),
                cifar10_test_accuracy_12_epochs=rec.accuracy["cifar10"]["test"])


def fmt_strategies(rows):
    out = [f"{'strategy':10s} " + " ".join(f"{ds:>18s}" for ds in DATASETS)]
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    for name in names:
        cells = []
        for ds in DATASETS:
            r = next(r for r in rows if r["strategy"] == name and r["dataset"] == ds)
            cells.append(f"{r['mean_test_accuracy']:.2f} ± {r['std_test_accuracy']:.2f}" if name != "optimum"
                         else f"{r['mean_test_accuracy']:.2f}")
        out.append(f"{name:10s} " + " ".join(f"{c:>18s}" for c in cells))
    return "\n".join(out)


def main(argv=None) -> int:
    sys.path.insert(0, ROOT)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=os.path.join(SHARED, "nb201_12epoch.csv"), help="the 12-epoch CSV table")
    ap.add_argument("--zero-cost", default=os.path.join(SHARED, "nb201_zero_cost.json"),
                    help="NAS-Bench-Suite-Zero's scores (JSON)")
    ap.add_argument("--strategies", default="random,rea,reinforce,ls,bo", help="comma list (bo needs Optuna)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=100, help="evaluations per run (default: %(default)s)")
    ap.add_argument("--one-shot-epochs", type=int, default=6, help="digits epochs of each one-shot method")
    ap.add_argument("--skip-one-shot", action="store_true")
    ap.add_argument("--skip-proxies", action="store_true")
    ap.add_argument("--whole-space", action="store_true", help="also time a synflow search of every cell (minutes)")
    ap.add_argument("--cifar10", metavar="DIR", help="CIFAR-10 root, for the data-dependent proxies")
    ap.add_argument("--json", action="store_true", help="one JSON object per row")
    args = ap.parse_args(argv)
    for path in (args.table, args.zero_cost):
        if not os.path.exists(path):
            print(f"error: {path} is missing (the shared NAS-Bench-201 tables; see ../shared/nb201/README.md)",
                  file=sys.stderr)
            return 2
    strategies = [s for s in args.strategies.split(",") if s]
    try:
        import optuna  # noqa: F401
    except ImportError:
        if "bo" in strategies:
            strategies.remove("bo")
            print("note: bo left out: pip install optuna", file=sys.stderr)
    import logging

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        sections = [("strategies", lambda: strategy_rows(args.table, strategies, args.seeds, args.budget, tmp))]
        if not args.skip_one_shot:
            sections.append(("one-shot", lambda: one_shot_rows(args.table, args.one_shot_epochs, tmp)))
        if not args.skip_proxies:
            sections.append(("proxies", lambda: proxy_rows(args.zero_cost, args.cifar10)))
        if args.whole_space:
            sections.append(("whole-space", lambda: [whole_space(args.table, tmp)]))
        for title, make in sections:
            rows = make()
            if args.json:
                for r in rows:
                    print(json.dumps(r), flush=True)
                continue
            if title == "strategies":
                print(f"Found cell's test accuracy (%, 12-epoch table), mean ± std over {args.seeds} seeds, "
                      f"{args.budget} evaluations, optimising the 12-epoch validation accuracy:")
                print(fmt_strategies(rows))
            elif title == "one-shot":
                print(f"\nOne-shot methods searched on DIGITS ({args.one_shot_epochs} epochs, --space nb201), "
                      "derived cell looked up (CIFAR-10 test accuracy, 12-epoch table):")
                for r in rows:
                    print(f"  {r['method']:10s} {r.get('cifar10_test_accuracy') or r.get('error', '-')!s:>8s}  "
                          f"{r.get('arch', '')}")
            elif title == "proxies":
                print("\nSpearman ρ vs 200-epoch validation accuracy (NAS-Bench-Suite-Zero's cells): ours | theirs "
                      "| ours vs their scores")
                for r in rows:
                    ours = "-" if r["spearman_vs_accuracy"] is None else f"{r['spearman_vs_accuracy']:.3f}"
                    vs = "-" if r["spearman_vs_reference_scores"] is None else \
                        f"{r['spearman_vs_reference_scores']:.4f}"
                    print(f"  {r['proxy']:10s} {r['dataset']:15s} {ours:>6s} | "
                          f"{r['reference_spearman_vs_accuracy']:.3f} | {vs}")
            else:
                print(f"\nWhole space: {rows[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
