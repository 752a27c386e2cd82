#!/usr/bin/env python
"""How far the paper's finite-difference Hessian-vector product (DARTS Eq. 8) is from the exact one.

Builds the search supernet, trains its weights for a few first-order steps (so the measurement is not at
initialisation), then computes the second-order α gradient with ``--hvp exact`` and with the finite difference at
several radii, and prints the relative error ‖g_fd − g_exact‖ / ‖g_exact‖ of the whole α gradient and of the
Hessian term alone. ``--json`` prints one JSON object per radius.

    python benchmarks/hvp_error.py                       # the paper's supernet: C=16, 8 cells, 32x32, batch 16
    python benchmarks/hvp_error.py --dtype float32 --batch 32
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from darts.bilevel import BilevelOptimizer  # noqa: E402
from darts.ops import DARTS_PRIMITIVES  # noqa: E402
from darts.spaces import Supernet  # noqa: E402


def rel(a, b):
    num = torch.cat([(x - y).flatten() for x, y in zip(a, b)]).norm()
    return float(num / torch.cat([y.flatten() for y in b]).norm())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--warmup-steps", type=int, default=5, help="first-order steps before measuring")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--radii", default="0.01,0.001,0.0001,0.000001", help="values of the radius r in ε = r/‖v‖")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    model = Supernet(args.channels, 10, args.layers, DARTS_PRIMITIVES, kernels="reference").to(dtype)
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    bo = BilevelOptimizer(model, nn.CrossEntropyLoss(), w_opt, a_opt, "first")
    size = (args.batch, 3, args.image_size, args.image_size)
    batch = lambda: (torch.randn(size, dtype=dtype), torch.randint(0, 10, (args.batch,)))
    for _ in range(args.warmup_steps):
        bo.step(batch(), batch(), 0.025)
    train, val = batch(), batch()
    xi = 0.025

    bo.order, bo.hvp = "second", "exact"
    t0 = time.time()
    exact, _ = bo.arch_gradient(train, val, xi)
    t_exact = time.time() - t0
    bo.order = "first"
    first, _ = bo.arch_gradient(train, val, xi)
    bo.order = "second"
    hess_exact = [(f - e) / xi for f, e in zip(first, exact)]  # the Hessian term ∇²_{α,w} L · v alone
    rows = []
    for r in [float(x) for x in args.radii.split(",")]:
        bo.hvp, bo.fd_radius = "finite-difference", r
        t0 = time.time()
        fd, _ = bo.arch_gradient(train, val, xi)
        t_fd = time.time() - t0
        hess_fd = [(f - g) / xi for f, g in zip(first, fd)]
        rows.append({"radius": r, "dtype": args.dtype, "channels": args.channels, "layers": args.layers,
                     "batch": args.batch, "rel_err_alpha_grad": rel(fd, exact), "rel_err_hvp": rel(hess_fd, hess_exact),
                     "fd_seconds": round(t_fd, 2), "exact_seconds": round(t_exact, 2)})
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"supernet C={args.channels}, {args.layers} cells, {args.image_size}x{args.image_size}, batch {args.batch}, "
          f"{args.dtype}, after {args.warmup_steps} warm-up steps; exact HVP took {t_exact:.1f}s")
    print(f"relative error of the first-order gradient vs the exact second-order one: {rel(first, exact):.3g}")
    print(f"{'radius r':>10} {'α-grad rel. err':>16} {'HVP rel. err':>14} {'FD time s':>10}")
    for r in rows:
        print(f"{r['radius']:>10g} {r['rel_err_alpha_grad']:>16.3g} {r['rel_err_hvp']:>14.3g} {r['fd_seconds']:>10.1f}")


if __name__ == "__main__":
    main()
