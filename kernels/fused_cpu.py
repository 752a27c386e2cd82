"""The fused search cell and mixed op in pure PyTorch: the same mathematics as the reference, less work and memory.

Node ``i`` of a cell is ``Σ_j Σ_k w_{ij,k} · op_{ij,k}(h_j)`` (DARTS Eq. 2 summed over the incoming edges). This
path computes it node by node instead of edge by edge:

* ``none`` is skipped: it contributes exactly zero, and its op-weight gradient ⟨g, 0⟩ is exactly zero.
* The ReLU that begins every conv op (SepConv, DilConv, ReLUConvBN, FactorizedReduce, ...) is computed once per
  input node and shared by every conv op of every edge that reads that node.
* Parameter-free pools are computed once per input node and stride, shared by the edges that read it; their
  non-affine BN has the same batch statistics on every edge, and each edge's running statistics are still moved.
* Every non-affine BN tail of a node's incoming ops (conv ops, pools, FactorizedReduce) is fused with the
  α-weighted sum into one autograd node (:mod:`kernels.bn_sum`, or the Triton kernel), which saves the BN inputs
  only, never the K normalised outputs. Its backward first copies the node's gradient, which arrives as a channel
  slice of the cell's concatenated output gradient, into a dense tensor: the CPU BatchNorm backward is about ten
  times slower on the slice (one thread of the second-order step went from 10.1 s to 7.9 s on 2 cores).
* On CPU, the inside of each SepConv (depthwise, 1x1, BN, ReLU, depthwise, 1x1) is one autograd node that keeps
  only its input, the shared ReLU (:mod:`kernels.sepconv`), and each DilConv's depthwise + 1x1 pair one that
  recomputes the depthwise output (:mod:`kernels.dwpw`): the conv ops store nothing but their BN-tail input.
  Their depthwise gradients (:mod:`kernels.dwconv`) are rewritten onto the cases oneDNN runs fast (flipped-kernel
  forward convs, polyphase and even-phase views of the dilated convs, a 5x5 weight gradient split into 5x3 and
  5x1 ones), which more than pays for the recomputation. Passes that want no weight gradient (the α-only
  passes of the bilevel step, ``torch.autograd.grad(loss, alphas)``) skip the weight gradients and the
  recomputations that only they need. Elsewhere only the 3x3 depthwise pairs recompute.
* On CPU the cell runs in channels-last layout, where the depthwise and 1x1 convolutions are several times faster,
  and on maps of 16x16 and more the 3x3 average pool is a ones-kernel depthwise sum divided by the tap count.
* What each candidate of an edge is (pool, conv op with BN tail, ...) is worked out once per mixed op
  (:func:`_edge_plan`), not at every call.
* Where a C++ compiler is available, the BN-weighted sum, the SepConv's middle BN + ReLU and the depthwise conv
  weight gradient (and forward, on maps up to 8x8) run as compiled kernels (:mod:`kernels.cpu_ext`).

What each of these gains, measured, is in ``docs/performance.md``.

Parameters and buffers are read from the modules at every call (``torch.func.functional_call`` substitutes
them in the second-order step). Any candidate module this file does not recognise runs as itself, unfused. In
eval mode (BatchNorm on running statistics) the reference path runs.
"""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bn_sum import bn_weighted_sum
from .dwpw import dw_pw, is_dw_pw
from .interface import FACTORIZED_REDUCE, IDENTITY, ZERO, kind_of
from .reference import cell_reference, mixed_op_reference
from .sepconv import is_sep_conv, sep_conv


def _running(bn: nn.BatchNorm2d):
    """``(running_mean, running_var, factor)`` for a fused BN, with ``BatchNorm2d.forward``'s bookkeeping."""
    if not bn.track_running_stats:
        return None
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return (bn.running_mean, bn.running_var, factor)


class _NodeSum:
    """Collects the terms of one node: BN-tailed ``(y, bn, weight)`` (fused later) and plain ``w · y`` terms."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights  # (edges, K)
        self.bn = defaultdict(list)  # eps -> [(y, bn module, (edge, k))]
        self.plain = None
        self.zero = None

    def add_bn(self, y, bn, edge, k):
        self.bn[bn.eps].append((y, bn, (edge, k)))

    def add_plain(self, y, edge, k):
        t = self.weights[edge, k] * y
        self.plain = t if self.plain is None else self.plain + t

    def total(self, bn_sum):
        out = self.plain
        for eps, terms in self.bn.items():
            ys = [t[0] for t in terms]
            rows = torch.tensor([t[2][0] for t in terms], device=self.weights.device)
            cols = torch.tensor([t[2][1] for t in terms], device=self.weights.device)
            s = bn_sum(ys, self.weights[rows, cols], eps, [_running(t[1]) for t in terms])
            out = s if out is None else out + s
        if out is None:  # every op was ``none``: the node is the zero op's output, as in the reference
            op, h, edge, k = self.zero
            out = self.weights[edge, k] * op(h)
        return out


def _body(layers, y):
    """Run ``layers`` (a tuple of modules) on ``y``, the inside of a conv op between its shared ReLU and its BN tail.

    On CPU a SepConv's inside runs as one node that keeps only ``y`` (:mod:`kernels.sepconv`), and every other
    depthwise + 1x1 pair (DilConv) as one node that recomputes the middle (:mod:`kernels.dwpw`), with the
    depthwise gradients of :mod:`kernels.dwconv`: with them recomputing is faster than oneDNN's own depthwise
    backward on stored outputs, and it stores less. Elsewhere (CUDA, with the Triton sum) only the 3x3 pairs
    recompute.
    """
    cpu = y.device.type == "cpu"
    if cpu and is_sep_conv(layers):
        return sep_conv(y, layers, _running(layers[2]))
    i = 0
    while i < len(layers):
        if (i + 1 < len(layers) and is_dw_pw(layers[i], layers[i + 1])
                and (cpu or layers[i].kernel_size == (3, 3))):
            y = dw_pw(y, layers[i], layers[i + 1])
            i += 2
        else:
            y = layers[i](y)
            i += 1
    return y


def _is_bn(m) -> bool:
    return isinstance(m, nn.BatchNorm2d) and not m.affine


def _edge_plan(mixed_op) -> list:
    """What each candidate of ``mixed_op`` is, worked out once for its current candidate modules.

    Entries ``(kind, k, parts)``: ``zero``, ``identity``, ``pool`` (pool, BN, cache key), ``conv`` (inside layers,
    BN: a ReLU-first op with a BN tail), ``reduce`` (FactorizedReduce), ``plain`` (run the module as is). The plan
    is worked out again when a candidate module is replaced; whether a BN is in training mode is checked at every
    call, since it may change.
    """
    ids = tuple(map(id, mixed_op.candidates))
    cached = mixed_op.__dict__.get("_fused_plan")
    if cached is not None and cached[0] == ids:
        return cached[1]
    plan = []
    for k, op in enumerate(mixed_op.candidates):
        kind = kind_of(op)
        if kind == ZERO:
            plan.append(("zero", k, op))
        elif kind == IDENTITY:
            plan.append(("identity", k, None))
        elif (isinstance(op, nn.Sequential) and len(op) == 2 and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d))
              and _is_bn(op[1])):
            # The pool's full configuration is its key: equal keys compute equal outputs.
            plan.append(("pool", k, (op[0], op[1], repr(op[0]))))
        elif (isinstance(getattr(op, "op", None), nn.Sequential) and isinstance(op.op[0], nn.ReLU)
              and _is_bn(op.op[-1])):
            plan.append(("conv", k, (tuple(op.op)[1:-1], op.op[-1])))
        elif kind == FACTORIZED_REDUCE and _is_bn(op.bn):
            plan.append(("reduce", k, op))
        else:
            plan.append(("plain", k, op))
    mixed_op.__dict__["_fused_plan"] = (ids, plan)  # a plain attribute: not a submodule, not in the state dict
    return plan


def _is_same_avg_pool_3x3(pool) -> bool:
    return (isinstance(pool, nn.AvgPool2d) and pool.kernel_size in (3, (3, 3)) and pool.padding in (1, (1, 1))
            and not pool.count_include_pad and not pool.ceil_mode and pool.divisor_override is None)


_INV_COUNT: dict = {}


def _avg_pool_3x3(h: torch.Tensor, stride: int) -> torch.Tensor:
    """``AvgPool2d(3, stride, padding=1, count_include_pad=False)`` as a depthwise sum and a divide by the count.

    The sum is a depthwise conv with a ones kernel, which oneDNN runs several times faster than PyTorch's average
    pool kernel on channels-last maps of 16x16 and more; the count of in-image taps per output (4, 6 or 9) is a
    cached map.
    """
    C, H, W = h.shape[1], h.shape[-2], h.shape[-1]
    key = (H, W, stride, h.dtype, h.device)
    inv = _INV_COUNT.get(key)
    if inv is None:
        ones = torch.ones(1, 1, H, W, dtype=h.dtype, device=h.device)
        inv = _INV_COUNT[key] = 1.0 / F.conv2d(ones, torch.ones(1, 1, 3, 3, dtype=h.dtype, device=h.device),
                                               None, stride, 1)
    return F.conv2d(h, h.new_ones(C, 1, 3, 3), None, stride, 1, 1, C) * inv


def _pool(pool, h: torch.Tensor) -> torch.Tensor:
    if h.device.type == "cpu" and h.shape[-2] * h.shape[-1] >= 256 and _is_same_avg_pool_3x3(pool):
        s = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
        if pool.stride in (s, (s, s)):
            return _avg_pool_3x3(h, s)
    return pool(h)


def _edge_terms(mixed_op, h, edge: int, node: _NodeSum, cache: dict) -> None:
    """Add the terms of one edge reading ``h`` to ``node``; ``cache`` holds what is shared per input node."""
    for kind, k, parts in _edge_plan(mixed_op):
        if kind == "zero":
            node.zero = node.zero or (parts, h, edge, k)
        elif kind == "identity":
            node.add_plain(h, edge, k)
        elif kind == "pool" and parts[1].training:
            pool, bn, key = parts
            if key not in cache:
                cache[key] = _pool(pool, h)
            node.add_bn(cache[key], bn, edge, k)
        elif kind == "conv" and parts[1].training:
            if "relu" not in cache:
                cache["relu"] = F.relu(h)
            node.add_bn(_body(parts[0], cache["relu"]), parts[1], edge, k)
        elif kind == "reduce" and parts.bn.training:
            if "relu" not in cache:
                cache["relu"] = F.relu(h)
            r = cache["relu"]
            node.add_bn(torch.cat([parts.conv_1(r), parts.conv_2(r[:, :, 1:, 1:])], dim=1), parts.bn, edge, k)
        else:  # an op we do not know the inside of, or a BN in eval mode: run it as is
            node.add_plain(mixed_op.candidates[k](h), edge, k)


def make_impls(bn_sum, channels_last_on_cpu: bool):
    """Build ``(mixed_op_impl, cell_impl)`` around a BN-weighted-sum function ``bn_sum(ys, w, eps, running)``."""

    def mixed_op_impl(mixed_op, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """One edge, ``Σ_k w_k · op_k(x)`` (DARTS Eq. 2), fused as described in the module docstring."""
        # Eval mode uses running statistics, and the fused autograd nodes are not autocast-aware (--amp):
        # both take the reference path.
        if not mixed_op.training or torch.is_autocast_enabled(x.device.type):
            return mixed_op_reference(mixed_op, x, weights)
        node = _NodeSum(weights.unsqueeze(0))
        _edge_terms(mixed_op, x, 0, node, {})
        return node.total(bn_sum)

    def cell_impl(cell, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """A search cell node by node; same signature and result as :func:`kernels.reference.cell_reference`."""
        if not cell.training or torch.is_autocast_enabled(s1.device.type):
            return cell_reference(cell, s0, s1, weights)
        if channels_last_on_cpu and s1.device.type == "cpu":
            s0 = s0.contiguous(memory_format=torch.channels_last)
            s1 = s1.contiguous(memory_format=torch.channels_last)
        states = list(cell.preprocess(s0, s1))
        caches = [{}, {}]
        offset = 0
        for _ in range(cell.steps):
            node = _NodeSum(weights)
            for j, h in enumerate(states):
                _edge_terms(cell.edges[offset + j], h, offset + j, node, caches[j])
            offset += len(states)
            states.append(node.total(bn_sum))
            caches.append({})
        return torch.cat(states[-cell.multiplier :], dim=1)

    return mixed_op_impl, cell_impl


mixed_op_fused_cpu, cell_fused_cpu = make_impls(bn_weighted_sum, channels_last_on_cpu=True)
