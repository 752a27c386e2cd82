"""Cost models of a space's cells: what the retrained network of a cell costs, op by op, and the differentiable
expected cost a search penalises (the form of FBNet, Wu et al., CVPR 2019, and ProxylessNAS, Cai et al., ICLR 2019).

A :class:`CostTable` holds, for every edge position of every cell type (an α row) and every op, the op's cost summed
over all cells of that type in the retraining network (``--init-channels``, ``--layers`` and image size of the
space's protocol for the data set), plus the fixed part (stem, the cells' input preprocessing, node sums, pooling
and head). A cell's predicted cost is ``fixed + Σ_edges cost[edge][op]``; the expected cost of a supernet is
``fixed + Σ_edges Σ_k w_k · cost[edge][k]`` with ``w`` the op weights of the method in use (softmax, sigmoid,
Gumbel or Dirichlet samples).

* ``params`` and ``flops`` (multiply-adds of Conv2d and Linear, as :func:`darts.counting.count_macs`) are
  analytic, per op (:func:`op_cost`);
* ``latency`` is measured on the user's device (:func:`profile_latency`, ``darts-forge profile``): each op at each
  position, warm-up, the median of repeated timings at a given batch size; the fixed part from the network with
  every op ``none``, less the ``none`` ops' own time; then one factor, fitted on a few whole networks of random
  cells, scales the ops' times to what they take inside a network.
"""
from __future__ import annotations

import json
import math
import platform
import random
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .counting import count_macs
from .errors import ConfigError, DataError
from .final import count_parameters
from .ops import build_op, get_op_spec
from .run.checkpoint import atomic_write_text

METRICS = ("params", "flops", "latency")
FORMAT = "darts-forge-costs/1"


# ---------------------------------------------------------------------------------------------------------
# analytic op costs

def _out(H: int, stride: int) -> int:
    return (H + stride - 1) // stride  # every op of the spaces pads to keep H at stride 1 and halve it at 2


def op_cost(op: str, C: int, stride: int, H: int) -> dict:
    """``{"params": ..., "flops": ...}`` of op ``op`` on ``C`` channels at ``H x H`` input and ``stride``, as built in
    the retraining networks (affine BatchNorm). Multiply-adds count Conv2d and Linear only, as
    :func:`darts.counting.count_macs`. An op without a formula here (a plug-in's) is built and counted."""
    Ho = _out(H, stride)
    P = Ho * Ho
    bn = 2 * C
    if op in ("none", "max_pool_3x3", "avg_pool_3x3") or (op == "skip_connect" and stride == 1):
        return {"params": 0, "flops": 0}
    if op == "skip_connect":  # FactorizedReduce: two 1x1 stride-2 convs to C/2 channels each, then BN
        return {"params": C * C + bn, "flops": C * C * P}
    if op.startswith("sep_conv_"):  # (ReLU, depthwise kxk, pointwise, BN) twice, the first at the stride
        k = int(op.rsplit("_", 1)[1].split("x")[0])
        return {"params": 2 * (k * k * C + C * C + bn), "flops": 2 * (k * k * C + C * C) * P}
    if op.startswith("dil_conv_"):  # ReLU, depthwise kxk dilated, pointwise, BN
        k = int(op.rsplit("_", 1)[1].split("x")[0])
        return {"params": k * k * C + C * C + bn, "flops": (k * k * C + C * C) * P}
    if op == "conv_7x1_1x7":  # ReLU, 1x7 at (1, stride), 7x1 at (stride, 1), BN
        return {"params": 14 * C * C + bn, "flops": 7 * C * C * H * Ho + 7 * C * C * P}
    if op.startswith("nor_conv_"):  # ReLU, kxk conv, BN
        k = int(op.rsplit("_", 1)[1].split("x")[0])
        return {"params": k * k * C * C + bn, "flops": k * k * C * C * P}
    get_op_spec(op)
    module = build_op(op, C, stride, True)
    return {"params": count_parameters(module), "flops": count_macs(module, (C, H, H))}


# ---------------------------------------------------------------------------------------------------------
# the table

@dataclass
class CostTable:
    """Costs of every op at every edge position of a space's retraining network (see the module docstring).

    Attributes:
        metric: ``params``, ``flops`` or ``latency``; ``unit``: what the numbers are (count, multiply-adds, ms).
        fixed: the cost of everything but the cells' ops.
        edges: ``{cell type: [{op: cost} for every α row]}``.
        network: the settings the costs are for (space, channels, layers, image size, classes, batch size).
        device: for latency, the device it was measured on (name, processor, torch and thread count).
    """

    metric: str
    unit: str
    fixed: float
    edges: dict
    network: dict
    device: dict = field(default_factory=dict)

    def cell_cost(self, space, genotype) -> float:
        """The predicted cost of ``genotype``'s retraining network: fixed part plus its ops' costs."""
        return self.fixed + sum(self.edges[g][row][op] for g, row, op in space.genotype_edges(genotype))

    def matrix(self, group: str, primitives, device=None) -> torch.Tensor:
        """``(rows, K)`` costs of cell type ``group`` over ``primitives`` (the columns of α)."""
        rows = self.edges[group]
        missing = sorted({p for p in primitives for r in rows if p not in r})
        if missing:
            raise ConfigError(f"the {self.metric} table has no cost for op(s) {', '.join(missing)}; profile again "
                              "with these primitives")
        return torch.tensor([[r[p] for p in primitives] for r in rows], dtype=torch.float32, device=device)

    def expected(self, weights: dict, primitives) -> torch.Tensor:
        """``fixed + Σ_groups Σ_rows Σ_k w[g][row, k] · cost[g][row][k]`` for op weights ``{group: (rows, K)}``,
        differentiable in the weights."""
        total = None
        for g, w in weights.items():
            part = (w * self.matrix(g, primitives, w.device)).sum()
            total = part if total is None else total + part
        return total + self.fixed

    # -- JSON -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "metric": self.metric, "unit": self.unit, "fixed": self.fixed,
                "edges": self.edges, "network": self.network, "device": self.device}

    def save(self, path: str) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str) -> "CostTable":
        """Read a table written by :meth:`save` (``darts-forge profile``); :class:`DataError` names the problem."""
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise DataError(f"cost table {path!r} does not exist (write one with darts-forge profile)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise DataError(f"cannot read cost table {path}: {e}") from None
        try:
            if not isinstance(d, dict) or d.get("format") != FORMAT:
                raise ValueError(f"not a cost table of format {FORMAT!r}")
            if d["metric"] not in METRICS:
                raise ValueError(f"unknown metric {d['metric']!r}")
            edges = d["edges"]
            if not isinstance(edges, dict) or not all(
                    isinstance(rows, list) and all(isinstance(r, dict) and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                        for v in r.values()) for r in rows) for rows in edges.values()):
                raise ValueError("'edges' must map each cell type to a list of {op: non-negative cost}")
            fixed = d["fixed"]
            if isinstance(fixed, bool) or not isinstance(fixed, (int, float)) or not math.isfinite(fixed):
                raise ValueError("'fixed' must be a number")
            if not isinstance(d["network"], dict):
                raise ValueError("'network' must be an object")
            return cls(d["metric"], str(d["unit"]), float(fixed), edges, d["network"], d.get("device") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: {e}") from None


def network_description(space, ncfg, num_classes: int, in_channels: int, image_size: int, batch_size: int = 1) -> dict:
    """What a cost table's numbers are for: the space and its retraining network's size."""
    return {"space": space.name, "init_channels": ncfg.init_channels, "layers": ncfg.layers,
            "image_size": image_size, "in_channels": in_channels, "num_classes": num_classes,
            "batch_size": batch_size}


def analytic_table(space, metric: str, ncfg, primitives, num_classes: int, in_channels: int,
                   image_size: int) -> CostTable:
    """The ``params`` or ``flops`` table of ``space``'s retraining network (settings ``ncfg``) over ``primitives``."""
    if metric not in ("params", "flops"):
        raise ConfigError(f"analytic cost tables are params or flops, not {metric!r}")
    positions = space.cost_positions(ncfg, image_size)
    edges = {g: [{op: sum(op_cost(op, C, s, H)[metric] for C, s, H in where) for op in primitives}
                 for where in rows] for g, rows in positions.items()}
    empty = space.build_network(space.empty_genotype(primitives), ncfg, num_classes, in_channels, image_size)
    fixed = count_parameters(empty) if metric == "params" else count_macs(empty, (in_channels, image_size,
                                                                                   image_size))
    return CostTable(metric, "parameters" if metric == "params" else "multiply-adds", float(fixed), edges,
                     network_description(space, ncfg, num_classes, in_channels, image_size))


# ---------------------------------------------------------------------------------------------------------
# latency

def measure_latency(module: nn.Module, input_shape, *, device="cpu", warmup: int = 5, repeats: int = 20) -> float:
    """Median milliseconds of one forward pass of ``module`` (eval mode, no gradients) on a zero tensor of
    ``input_shape`` (batch included), after ``warmup`` passes."""
    device = torch.device(device)
    module = module.to(device).eval()
    x = torch.zeros(tuple(input_shape), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            sync()
            t0 = time.perf_counter()
            module(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def device_description(device) -> dict:
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                             platform.machine())
    return {"device": str(device), "name": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "platform": platform.platform()}


CALIBRATION_SEED = 20_261_202

#: ops are timed as runs of this many copies, each reading the previous one's output (at stride 2: the same input),
#: as they run in a network: a lone op's timing carries its cold start (about 20% slower on CPU in our measurements)
CHAIN = 4


class _Chain(nn.Module):
    def __init__(self, ops):
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x):
        y = x
        for op in self.ops:
            y = op(y if y.shape == x.shape else x)
        return y


def profile_latency(space, ncfg, primitives, num_classes: int, in_channels: int, image_size: int, *,
                    batch_size: int = 1, device="cpu", warmup: int = 5, repeats: int = 20, calibrate: int = 4,
                    progress=None) -> CostTable:
    """Measure every op at every distinct position of ``space``'s retraining network and the fixed part; then, with
    ``calibrate`` > 0, scale the ops' times by one factor fitted on that many whole networks of random cells."""
    positions = space.cost_positions(ncfg, image_size)
    distinct = sorted({p for rows in positions.values() for where in rows for p in where})
    per_op = {}
    for i, (C, s, H) in enumerate(distinct):
        for op in primitives:
            torch.manual_seed(0)
            chain = _Chain([build_op(op, C, s, True) for _ in range(CHAIN)])
            per_op[(op, C, s, H)] = measure_latency(chain, (batch_size, C, H, H), device=device, warmup=warmup,
                                                    repeats=repeats) / CHAIN
        if progress:
            progress(i + 1, len(distinct))
    edges = {g: [{op: sum(per_op[(op, C, s, H)] for C, s, H in where) for op in primitives} for where in rows]
             for g, rows in positions.items()}
    torch.manual_seed(0)
    empty_g = space.empty_genotype(primitives)
    empty = space.build_network(empty_g, ncfg, num_classes, in_channels, image_size)
    whole = measure_latency(empty, (batch_size, in_channels, image_size, image_size), device=device, warmup=warmup,
                            repeats=repeats)
    none_time = sum(edges[g][row]["none"] for g, row, _ in space.genotype_edges(empty_g)) if "none" in primitives \
        else 0.0
    table = CostTable("latency", "ms", max(whole - none_time, 0.0), edges,
                      network_description(space, ncfg, num_classes, in_channels, image_size, batch_size),
                      device_description(device))
    if calibrate:
        # Ops timed outside a network run slower than inside one (on CPU about 15-30%, more at large batches:
        # caches, thread wake-ups), so one factor s per table scales them: least squares of fixed + s·Σ ops against
        # whole networks of random cells (drawn from their own seed, apart from any cell a user compares with).
        enc, rng = space.encoding(primitives), random.Random(CALIBRATION_SEED)
        xs, ys = [], []
        for _ in range(calibrate):
            g = enc.decode(enc.random(rng))
            torch.manual_seed(0)
            net = space.build_network(g, ncfg, num_classes, in_channels, image_size)
            xs.append(table.cell_cost(space, g) - table.fixed)
            ys.append(measure_latency(net, (batch_size, in_channels, image_size, image_size), device=device,
                                      warmup=warmup, repeats=repeats) - table.fixed)
        scale = sum(x * y for x, y in zip(xs, ys)) / max(sum(x * x for x in xs), 1e-12)
        if scale > 0:
            table.edges = {g: [{op: v * scale for op, v in r.items()} for r in rows] for g, rows in edges.items()}
        table.device["calibration"] = {"scale": scale, "cells": calibrate, "seed": CALIBRATION_SEED}
    return table


# ---------------------------------------------------------------------------------------------------------
# the penalty and the hard rule

#: the penalty forms: (name, paper, formula)
FORMS = {
    "hinge": "λ · max(0, E[cost] / target − 1): only above the target (ProxylessNAS's and TAS's budgeted form)",
    "log": "λ · log(E[cost] / target): FBNet's latency term (its α·log(LAT)^β with β = 1), additive",
}


def cost_penalty(expected: torch.Tensor, target: float, weight: float, form: str = "hinge") -> torch.Tensor:
    """The differentiable cost penalty of an expected cost (see :data:`FORMS`)."""
    ratio = expected / target
    if form == "hinge":
        return weight * torch.relu(ratio - 1)
    if form == "log":
        return weight * torch.log(ratio)
    raise ConfigError(f"unknown cost form {form!r}; choose from {', '.join(FORMS)}")


def fit_to_target(space, genotype, strengths: dict, table: CostTable, target: float):
    """The cell the space's rule derived, made to cost at most ``target`` with the least loss of op strength.

    While the cell is above the target, the op change (on one of its edges, to a cheaper op of the space) that loses
    the least strength ``w[edge, old] − w[edge, new]`` is made; then, if every edge is at its cheapest op and the
    cell is still above the target, the space may re-choose the edges themselves (:meth:`cheapest_topology`).
    Returns ``(genotype, cost)``; the cost is above ``target`` only if no cell of the space's rule is under it.
    """
    prims = list(genotype.primitives or space.primitives)
    edges = list(space.genotype_edges(genotype))
    ops = [op for _, _, op in edges]
    cost = table.cell_cost(space, genotype)
    while cost > target:
        best = None
        for i, (g, row, op) in enumerate(edges):
            for new in prims:
                if new == ops[i] or not space.may_take(g, row, new):
                    continue
                saving = table.edges[g][row][ops[i]] - table.edges[g][row][new]
                if saving <= 0:
                    continue
                loss = float(strengths[g][row, prims.index(ops[i])] - strengths[g][row, prims.index(new)])
                key = (loss, -saving)
                if best is None or key < best[0]:
                    best = (key, i, new, saving)
        if best is None:
            break
        _, i, new, saving = best
        ops[i] = new
        cost -= saving
    genotype = space.with_ops(genotype, ops)
    if cost > target:
        cheaper = space.cheapest_topology(genotype, table)
        if cheaper is not None and table.cell_cost(space, cheaper) < cost:
            genotype = cheaper
    return genotype, table.cell_cost(space, genotype)


# ---------------------------------------------------------------------------------------------------------
# in a search

class SearchCost:
    """A search's ``--cost``: the table, the penalty of the α step (with ``--cost-target``), the hard rule at
    derivation and the costs logged each epoch (the derived cell's predicted and measured cost, the supernet's
    expected one)."""

    def __init__(self, space, cfg, table: CostTable, ncfg, num_classes: int, in_channels: int, image_size: int,
                 device):
        self.space, self.cfg, self.table, self.ncfg = space, cfg, table, ncfg
        self.shape = (num_classes, in_channels, image_size)
        self.device = device

    @classmethod
    def create(cls, space, cfg, ncfg, num_classes: int, in_channels: int, image_size: int, device):
        """None without ``--cost``; else the table (analytic, or ``--cost-table`` for latency), checked against the
        retraining network the search's data set implies."""
        if cfg.cost is None:
            return None
        if cfg.cost == "latency":
            if cfg.cost_table is None:
                raise ConfigError("--cost latency reads a measured table: give --cost-table FILE (darts-forge profile "
                                  "writes one)")
            table = CostTable.load(cfg.cost_table)
            if table.metric != "latency":
                raise ConfigError(f"{cfg.cost_table} is a {table.metric} table, not a latency one")
            want = network_description(space, ncfg, num_classes, in_channels, image_size, table.network.get(
                "batch_size", 1))
            diff = [f"{k} {table.network.get(k)!r} (this search: {v!r})" for k, v in want.items()
                    if table.network.get(k) != v]
            if diff:
                raise ConfigError(f"{cfg.cost_table} was profiled for another network: {', '.join(diff)}; profile "
                                  "with the search's --space and --dataset")
        else:
            table = analytic_table(space, cfg.cost, ncfg, cfg.primitives, num_classes, in_channels, image_size)
        return cls(space, cfg, table, ncfg, num_classes, in_channels, image_size, device)

    def expected(self, model) -> torch.Tensor:
        return self.table.expected(dict(zip(model.alphas.groups, model.edge_weights())), model.primitives)

    def penalty(self, model) -> torch.Tensor | None:
        """The α step's cost penalty (None without ``--cost-target``)."""
        if self.cfg.cost_target is None:
            return None
        return cost_penalty(self.expected(model), self.cfg.cost_target, self.cfg.cost_weight, self.cfg.cost_form)

    def derive(self, model, genotype):
        """``genotype`` under ``--cost-target`` by :func:`fit_to_target` (as it is without a target)."""
        if self.cfg.cost_target is None:
            return genotype
        strengths = dict(zip(model.alphas.groups, model.strengths()))
        fitted, cost = fit_to_target(self.space, genotype, strengths, self.table, self.cfg.cost_target)
        return fitted

    def metrics(self, model, genotype) -> dict:
        """``cost_predicted`` and ``cost_measured`` of ``genotype``'s retraining network and the supernet's
        ``cost_expected``, in the table's unit."""
        num_classes, in_channels, H = self.shape
        net = self.space.build_network(genotype, self.ncfg, num_classes, in_channels, H)
        if self.table.metric == "params":
            measured = float(count_parameters(net))
        elif self.table.metric == "flops":
            measured = float(count_macs(net, (in_channels, H, H)))
        else:
            measured = measure_latency(net, (self.table.network.get("batch_size", 1), in_channels, H, H),
                                       device=self.device)
        with torch.no_grad():
            expected = float(self.expected(model))
        return {"cost_predicted": self.table.cell_cost(self.space, genotype), "cost_measured": measured,
                "cost_expected": expected}
