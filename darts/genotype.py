"""Genotypes (discrete cells), their JSON and log-text formats, and the DARTS discretizer.

A cell has two input nodes (indices 0 and 1: the outputs of the two previous cells) and ``steps`` intermediate
nodes (indices 2 .. steps+1). Node ``2+i`` sums two ops, each applied to an earlier node; ``normal[2i]`` and
``normal[2i+1]`` are those ``(op_name, input_index)`` pairs. The cell outputs the concatenation of the nodes in
``normal_concat``. This is the format of the original DARTS ``genotypes.py``.
"""
from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .errors import DartsError, GenotypeError
from .ops import get_op_spec

FORMAT = "darts-genotype/1"

Edge = tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    """A discrete architecture: the normal and the reduction cell.

    Attributes:
        normal, reduce: ``(op_name, input_node)`` pairs, two per intermediate node, in node order.
        normal_concat, reduce_concat: the node indices concatenated into the cell output.
        primitives: the search space (ordered op names) the cell was derived from, if known.
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    primitives: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self):
        # Normalise lists (JSON, user code) to tuples so genotypes are hashable and compare by value.
        for name in ("normal", "reduce"):
            object.__setattr__(self, name, tuple((str(op), int(i)) for op, i in getattr(self, name)))
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))
        if self.primitives is not None:
            object.__setattr__(self, "primitives", tuple(self.primitives))

    @property
    def steps(self) -> int:
        """Number of intermediate nodes of the normal cell."""
        return len(self.normal) // 2

    def ops(self) -> set[str]:
        return {op for op, _ in self.normal + self.reduce}

    def validate(self, check_ops: bool = True) -> "Genotype":
        """Check the cell graphs; raise :class:`GenotypeError` naming the first problem. Returns ``self``."""
        for cell in ("normal", "reduce"):
            edges, concat = getattr(self, cell), getattr(self, cell + "_concat")
            if not edges or len(edges) % 2:
                raise GenotypeError(f"{cell}: needs two (op, input) pairs per node, got {len(edges)} pairs")
            steps = len(edges) // 2
            for k, (op, j) in enumerate(edges):
                node = 2 + k // 2
                if not 0 <= j < node:
                    raise GenotypeError(
                        f"{cell}: edge {k} ({op!r}) of node {node} reads node {j}, but node {node} can only read "
                        f"nodes 0..{node - 1}"
                    )
                if check_ops:
                    try:
                        get_op_spec(op)
                    except DartsError as e:
                        raise GenotypeError(f"{cell}: edge {k}: {e}") from None
                if self.primitives is not None and op not in self.primitives:
                    raise GenotypeError(f"{cell}: edge {k} uses {op!r}, which is not in its primitives")
            if not concat:
                raise GenotypeError(f"{cell}_concat is empty")
            for i in concat:
                if not 0 <= i < steps + 2:
                    raise GenotypeError(f"{cell}_concat: node {i} does not exist (nodes are 0..{steps + 1})")
            if len(set(concat)) != len(concat):
                raise GenotypeError(f"{cell}_concat repeats a node: {list(concat)}")
        return self

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {
            "format": FORMAT,
            "normal": [[op, j] for op, j in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, j] for op, j in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        if self.primitives is not None:
            d["primitives"] = list(self.primitives)
        return d

    @classmethod
    def from_dict(cls, d, check_ops: bool = True) -> "Genotype":
        """Build and validate a genotype from its JSON object; :class:`GenotypeError` if malformed."""
        if not isinstance(d, dict):
            raise GenotypeError(f"a genotype must be a JSON object, got {type(d).__name__}")
        if d.get("format") == "nb201-genotype/1":
            raise GenotypeError("this is a NAS-Bench-201 cell (from --space nb201): look its accuracy up in the "
                                "benchmark by its string; train_final.py retrains DARTS-space cells")
        missing = [k for k in ("normal", "normal_concat", "reduce", "reduce_concat") if k not in d]
        if missing:
            raise GenotypeError(f"genotype is missing the field(s) {', '.join(missing)}")
        unknown = set(d) - {"format", "normal", "normal_concat", "reduce", "reduce_concat", "primitives"}
        if unknown:
            raise GenotypeError(f"genotype has unknown field(s) {', '.join(sorted(unknown))}")
        if "format" in d and d["format"] != FORMAT:
            raise GenotypeError(f"genotype format {d['format']!r} is not {FORMAT!r}")
        kw = {}
        for cell in ("normal", "reduce"):
            edges = d[cell]
            if not isinstance(edges, list):
                raise GenotypeError(f"{cell} must be a list of [op, input] pairs")
            pairs = []
            for k, e in enumerate(edges):
                if (
                    not isinstance(e, (list, tuple))
                    or len(e) != 2
                    or not isinstance(e[0], str)
                    or not isinstance(e[1], int)
                    or isinstance(e[1], bool)
                ):
                    raise GenotypeError(f"{cell}[{k}] must be an [op_name, input_index] pair, got {e!r}")
                pairs.append((e[0], e[1]))
            kw[cell] = pairs
            concat = d[cell + "_concat"]
            if not isinstance(concat, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in concat
            ):
                raise GenotypeError(f"{cell}_concat must be a list of node indices, got {concat!r}")
            kw[cell + "_concat"] = concat
        prims = d.get("primitives")
        if prims is not None and (not isinstance(prims, list) or not all(isinstance(p, str) for p in prims)):
            raise GenotypeError("primitives must be a list of op names")
        return cls(primitives=prims, **kw).validate(check_ops)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str) -> None:
        """Write the genotype as JSON, atomically."""
        from .checkpoint import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    def __str__(self) -> str:  # the original DARTS log format, which parse_genotype_text reads back
        return (
            f"Genotype(normal={list(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={list(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )


def parse_genotype_text(text: str, check_ops: bool = True) -> Genotype:
    """Parse ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)`` as printed by the
    original DARTS logs, without evaluating it: only literals and ``range(a, b)`` are accepted."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise GenotypeError(f"genotype text is not valid: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError):  # absurd nesting, NUL bytes
        raise GenotypeError("genotype text is not valid: nested too deeply or contains NUL bytes") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise GenotypeError("genotype text must have the form Genotype(normal=[...], normal_concat=..., ...)")
    if call.args:
        raise GenotypeError("genotype text must use keyword arguments (normal=..., reduce=...)")

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [value(e) for e in node.elts]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
            and not node.keywords
            and 1 <= len(node.args) <= 2
        ):
            bounds = [value(a) for a in node.args]
            if all(isinstance(b, int) for b in bounds):
                return list(range(*bounds))
        raise GenotypeError(f"genotype text contains an unsupported expression: {ast.unparse(node)[:60]!r}")

    d = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise GenotypeError("genotype text must not use ** arguments")
        d[kw.arg] = value(kw.value)
    for cell in ("normal", "reduce"):
        if isinstance(d.get(cell), list):
            d[cell] = [list(e) if isinstance(e, list) else e for e in d[cell]]
    return Genotype.from_dict(d, check_ops=check_ops)


def read_genotype_file(path: str) -> str:
    """The text of a genotype file; :class:`GenotypeError` naming the file if it is missing or unreadable."""
    if not os.path.isfile(path):
        raise GenotypeError(f"genotype file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise GenotypeError(f"cannot read genotype file {path!r}: {e}") from None


def load_genotype(path: str, check_ops: bool = True) -> Genotype:
    """Read a genotype from a JSON file (or a file holding the DARTS log text); clear errors otherwise."""
    text = read_genotype_file(path)
    stripped = text.lstrip()
    if stripped.startswith("Genotype("):
        return parse_genotype_text(stripped, check_ops)
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenotypeError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise GenotypeError(f"{path}: JSON nested too deeply") from None
    try:
        return Genotype.from_dict(d, check_ops)
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------------------
# The discretizer


def num_edges(steps: int) -> int:
    """Edges of a DARTS cell with ``steps`` intermediate nodes: node i reads the 2+i nodes before it."""
    return sum(2 + i for i in range(steps))


def _derive_cell(weights: torch.Tensor, primitives: Sequence[str], steps: int, excluded: set[int]) -> list[Edge]:
    """The DARTS rule for one cell (``weights``: (edges, K) op strengths, e.g. softmax(α)).

    Each node keeps the two incoming edges whose strongest non-excluded op is strongest, and each kept edge
    takes that op. Ties go to the earlier edge / earlier op, as in the original (stable sort).
    """
    W = weights.detach().to("cpu", torch.float64).tolist()
    allowed = [k for k in range(len(primitives)) if k not in excluded]
    if not allowed:
        raise GenotypeError("every op of the search space is excluded from the derived cell")
    gene: list[Edge] = []
    start = 0
    for i in range(steps):
        n = 2 + i
        rows = W[start : start + n]
        best = [max(allowed, key=lambda k: (row[k], -k)) for row in rows]
        edges = sorted(range(n), key=lambda j: -rows[j][best[j]])[:2]
        gene.extend((primitives[best[j]], j) for j in edges)
        start += n
    return gene


def derive_genotype(
    weights_normal: torch.Tensor,
    weights_reduce: torch.Tensor,
    primitives: Sequence[str],
    steps: int = 4,
    multiplier: int | None = None,
    max_skip: int | None = None,
) -> Genotype:
    """Discretize op strengths (rows = edges, columns = ``primitives``) into a :class:`Genotype`.

    The ``none`` op (any op registered with ``is_zero``) is never chosen; it is found by name in
    ``primitives``, never by a fixed column. ``multiplier`` (default ``steps``) nodes are concatenated.
    ``max_skip`` (P-DARTS / DARTS+) keeps at most that many ``skip_connect`` in the normal cell, replacing the
    weakest ones by their edge's next-best op.
    """
    primitives = tuple(primitives)
    E = num_edges(steps)
    for name, w in (("normal", weights_normal), ("reduce", weights_reduce)):
        if tuple(w.shape) != (E, len(primitives)):
            raise GenotypeError(
                f"{name} weights have shape {tuple(w.shape)}, expected ({E}, {len(primitives)}) for {steps} nodes"
            )
    excluded = {k for k, p in enumerate(primitives) if get_op_spec(p).is_zero}
    if max_skip is not None and "skip_connect" in primitives:
        normal = _limit_skips(weights_normal, primitives, steps, excluded, max_skip)
    else:
        normal = _derive_cell(weights_normal, primitives, steps, excluded)
    reduce = _derive_cell(weights_reduce, primitives, steps, excluded)
    multiplier = steps if multiplier is None else multiplier
    concat = tuple(range(2 + steps - multiplier, steps + 2))
    return Genotype(normal, concat, reduce, concat, primitives)


def _limit_skips(weights, primitives, steps, excluded, max_skip):
    """Re-derive the normal cell with the weakest skip connections removed until at most ``max_skip`` remain
    (P-DARTS Sec. 3.3: the skip op is masked on those edges and the rule applied again)."""
    skip = primitives.index("skip_connect")
    w = weights.detach().to("cpu", torch.float64).clone()
    while True:
        gene = _derive_cell(w, primitives, steps, excluded)
        if sum(op == "skip_connect" for op, _ in gene) <= max_skip:
            return gene
        # find the kept skip edge with the smallest skip strength and mask skip on it
        start, weakest = 0, None
        for i in range(steps):
            for op, j in gene[2 * i : 2 * i + 2]:
                if op == "skip_connect":
                    row = start + j
                    if weakest is None or w[row, skip] < w[weakest, skip]:
                        weakest = row
            start += 2 + i
        w[weakest, skip] = float("-inf")
