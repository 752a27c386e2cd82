#!/usr/bin/env python
"""Time the fused BN-weighted sum ``Σ_k w_k · BN(y_k)`` (a supernet node, DARTS Eq. 2) alone, in GB/s.

For each shape ``B,C,H,W,K`` and implementation (``reference``: K BatchNorms, products and sums in PyTorch;
``torch``: the fused autograd node of :mod:`kernels.bn_sum`; ``triton``: :mod:`kernels.triton_mixed`, CUDA only)
it times forward and forward+backward and divides the bytes the operation must move by the time:
forward reads K inputs and writes one output, ``(K + 1)·N`` elements; backward reads the output gradient and K
inputs and writes K input gradients, ``(2K + 1)·N``. A device-to-device copy of the same size gives the
bandwidth to compare with (the GPU target: fused kernels at ≥ 80% of copy bandwidth).

    python benchmarks/bench_mixed_op.py                       # CPU: reference and torch
    python benchmarks/bench_mixed_op.py --device cuda --json  # adds triton
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from kernels.bn_sum import bn_weighted_sum  # noqa: E402
from kernels.reference import bn_weighted_sum_reference  # noqa: E402

# Node sums of the C=16 search supernet at batch 64: normal cells at 32x32 (16 ch), 16x16 (32), 8x8 (64);
# K = BN-tailed terms of a node (6 per edge: 2 pools and 4 convs). Plus an odd shape.
SHAPES = "64,16,32,32,12;64,32,16,16,18;64,64,8,8,24;3,36,7,7,6"


def _time(fn, device, reps):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    ts = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench(shape, impl, device, reps):
    """One row: median seconds and GB/s of forward and of forward+backward for ``impl`` on ``shape``."""
    B, C, H, W, K = shape
    ys = [torch.randn(B, C, H, W, device=device).requires_grad_() for _ in range(K)]
    w = torch.softmax(torch.randn(K, device=device), 0).requires_grad_()
    g = torch.randn(B, C, H, W, device=device)
    if impl == "reference":
        f = bn_weighted_sum_reference
    elif impl == "torch":
        f = bn_weighted_sum
    else:
        from kernels.triton_mixed import bn_weighted_sum_triton as f
    n, s = B * C * H * W, 4
    with torch.no_grad():
        t_fwd = _time(lambda: f(ys, w, 1e-5), device, reps)
    t_all = _time(lambda: torch.autograd.grad(f(ys, w, 1e-5), [w, *ys], g), device, reps)
    t_bwd = max(t_all - t_fwd, 1e-9)
    fwd_bytes, bwd_bytes = (K + 1) * n * s, (2 * K + 1) * n * s
    return dict(shape=list(shape), impl=impl, device=device.type, fwd_ms=t_fwd * 1e3, bwd_ms=t_bwd * 1e3,
                fwd_gbps=fwd_bytes / t_fwd / 1e9, bwd_gbps=bwd_bytes / t_bwd / 1e9)


def copy_bandwidth(device, mb=256, reps=10):
    """GB/s of a device-to-device copy (read + write) of ``mb`` MB."""
    x = torch.empty(mb * 2**20 // 4, device=device)
    y = torch.empty_like(x)
    t = _time(lambda: y.copy_(x), device, reps)
    return 2 * x.numel() * 4 / t / 1e9


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=SHAPES, help="B,C,H,W,K;... (K = number of BN-tailed terms)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--impls", default=None, help="comma list of reference,torch,triton (default: all that run)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    impls = args.impls.split(",") if args.impls else ["reference", "torch"] + (["triton"] * (device.type == "cuda"))
    if device.type != "cuda":
        print("note: the Triton kernels run on CPU only in the interpreter (TRITON_INTERPRET=1), which is far too "
              "slow to time; they are timed on CUDA only", file=sys.stderr)
    copy = copy_bandwidth(device)
    rows = [bench(tuple(int(v) for v in s.split(",")), impl, device, args.reps)
            for s in args.shapes.split(";") for impl in impls]
    for r in rows:
        r["copy_gbps"] = copy
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"device-to-device copy: {copy:.1f} GB/s")
    print(f"{'shape B,C,H,W,K':<20}{'impl':<11}{'fwd ms':>9}{'fwd GB/s':>10}{'bwd ms':>9}{'bwd GB/s':>10}"
          f"{'fwd %copy':>11}{'bwd %copy':>11}")
    for r in rows:
        print(f"{','.join(map(str, r['shape'])):<20}{r['impl']:<11}{r['fwd_ms']:>9.2f}{r['fwd_gbps']:>10.1f}"
              f"{r['bwd_ms']:>9.2f}{r['bwd_gbps']:>10.1f}{100 * r['fwd_gbps'] / copy:>10.0f}%"
              f"{100 * r['bwd_gbps'] / copy:>10.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
