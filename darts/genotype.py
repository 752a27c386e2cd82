"""Genotypes (discrete cells), their JSON and log-text formats, and the discretizer's cell rules.

A cell has two input nodes (indices 0 and 1: the outputs of the two previous cells) and intermediate nodes
(indices 2, 3, ...). Each edge is an ``(op_name, input_index)`` pair applied to an earlier node; a node sums the
ops of its edges, and the cell outputs the concatenation of the nodes in ``normal_concat``. In the format of the
original DARTS ``genotypes.py`` every intermediate node has exactly two edges, ``normal[2i]`` and
``normal[2i+1]`` for node ``2+i``. A sparse cell (FairDARTS's threshold rule keeps 0, 1 or 2 ops per node) names
each edge's node explicitly (``normal_nodes``); nodes without an edge are absent, and no edge may read one.
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
from .run.checkpoint import atomic_write_text

FORMAT = "darts-genotype/1"

Edge = tuple[str, int]
CELLS = ("normal", "reduce")


def classic_nodes(n_edges: int) -> tuple[int, ...]:
    """The node of each edge in the two-edges-per-node layout: edges ``2i`` and ``2i+1`` feed node ``2+i``."""
    return tuple(2 + k // 2 for k in range(n_edges))


@dataclass(frozen=True)
class Genotype:
    """A discrete architecture: the normal and the reduction cell.

    Attributes:
        normal, reduce: ``(op_name, input_node)`` pairs in node order; two per intermediate node unless the cell's
            ``*_nodes`` says otherwise.
        normal_concat, reduce_concat: the node indices concatenated into the cell output.
        primitives: the search space (ordered op names) the cell was derived from, if known.
        normal_nodes, reduce_nodes: the node each edge feeds, for sparse cells (nodes with other than two edges);
            ``None`` for the two-edges-per-node layout (given explicitly, that layout is stored as ``None``).
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    primitives: tuple[str, ...] | None = field(default=None, compare=False)
    normal_nodes: tuple[int, ...] | None = None
    reduce_nodes: tuple[int, ...] | None = None

    def __post_init__(self):
        # Normalise lists (JSON, user code) to tuples so genotypes are hashable and compare by value.
        for name in CELLS:
            object.__setattr__(self, name, tuple((str(op), int(i)) for op, i in getattr(self, name)))
            nodes = getattr(self, name + "_nodes")
            if nodes is not None:
                nodes = tuple(int(n) for n in nodes)
                if len(nodes) % 2 == 0 and nodes == classic_nodes(len(nodes)):
                    nodes = None
                object.__setattr__(self, name + "_nodes", nodes)
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))
        if self.primitives is not None:
            object.__setattr__(self, "primitives", tuple(self.primitives))

    @property
    def steps(self) -> int:
        """Number of intermediate nodes of the normal cell (the highest node index − 1)."""
        return max(self.nodes("normal"), default=1) - 1

    @property
    def sparse(self) -> bool:
        """True when a cell has nodes with other than two edges (see ``normal_nodes``)."""
        return self.normal_nodes is not None or self.reduce_nodes is not None

    def nodes(self, cell: str) -> tuple[int, ...]:
        """The node each edge of ``cell`` (``normal`` or ``reduce``) feeds, in edge order."""
        nodes = getattr(self, cell + "_nodes")
        return classic_nodes(len(getattr(self, cell))) if nodes is None else nodes

    def edges(self, cell: str) -> tuple[tuple[str, int, int], ...]:
        """``(op, input_node, node)`` of every edge of ``cell``, in edge order."""
        return tuple((op, j, n) for (op, j), n in zip(getattr(self, cell), self.nodes(cell)))

    def ops(self) -> set[str]:
        return {op for op, _ in self.normal + self.reduce}

    def validate(self, check_ops: bool = True) -> "Genotype":
        """Check the cell graphs; raise :class:`GenotypeError` naming the first problem. Returns ``self``."""
        for cell in CELLS:
            edges, concat = getattr(self, cell), getattr(self, cell + "_concat")
            explicit = getattr(self, cell + "_nodes")
            if explicit is None and (not edges or len(edges) % 2):
                raise GenotypeError(f"{cell}: needs two (op, input) pairs per node, got {len(edges)} pairs")
            if explicit is not None:
                if not edges:
                    raise GenotypeError(f"{cell}: a cell needs at least one edge")
                if len(explicit) != len(edges):
                    raise GenotypeError(f"{cell}_nodes names {len(explicit)} nodes for {len(edges)} edges")
                if any(n < 2 for n in explicit) or list(explicit) != sorted(explicit):
                    raise GenotypeError(f"{cell}: edges must be listed by node, nodes 2 and up, got {list(explicit)}")
            nodes = self.nodes(cell)
            present = {0, 1, *nodes}
            for k, ((op, j), node) in enumerate(zip(edges, nodes)):
                if not 0 <= j < node:
                    raise GenotypeError(
                        f"{cell}: edge {k} ({op!r}) of node {node} reads node {j}, but node {node} can only read "
                        f"nodes 0..{node - 1}"
                    )
                if j not in present:
                    raise GenotypeError(f"{cell}: edge {k} ({op!r}) of node {node} reads node {j}, which has no "
                                        "edge of its own")
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
                if i not in present:
                    last = max(nodes)
                    raise GenotypeError(f"{cell}_concat: node {i} does not exist (nodes are 0..{last}"
                                        + (", those with edges" if explicit is not None else "") + ")")
            if len(set(concat)) != len(concat):
                raise GenotypeError(f"{cell}_concat repeats a node: {list(concat)}")
        return self

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT}
        for cell in CELLS:
            explicit = getattr(self, cell + "_nodes") is not None
            d[cell] = [[op, j, n] if explicit else [op, j] for op, j, n in self.edges(cell)]
            d[cell + "_concat"] = list(getattr(self, cell + "_concat"))
        if self.primitives is not None:
            d["primitives"] = list(self.primitives)
        return d

    @classmethod
    def from_dict(cls, d, check_ops: bool = True) -> "Genotype":
        """Build and validate a genotype from its JSON object; :class:`GenotypeError` if malformed.

        Edges are ``[op, input]`` pairs (two per node, in node order) or, for a sparse cell, ``[op, input, node]``
        triples listed by node."""
        if not isinstance(d, dict):
            raise GenotypeError(f"a genotype must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("normal", "normal_concat", "reduce", "reduce_concat") if k not in d]
        if missing:
            raise GenotypeError(f"genotype is missing the field(s) {', '.join(missing)}")
        unknown = set(d) - {"format", "normal", "normal_concat", "reduce", "reduce_concat", "primitives"}
        if unknown:
            raise GenotypeError(f"genotype has unknown field(s) {', '.join(sorted(unknown))}")
        if "format" in d and d["format"] != FORMAT:
            raise GenotypeError(f"genotype format {d['format']!r} is not {FORMAT!r}")
        kw = {}
        for cell in CELLS:
            edges = d[cell]
            if not isinstance(edges, list):
                raise GenotypeError(f"{cell} must be a list of [op, input] pairs")
            pairs, nodes = [], []
            for k, e in enumerate(edges):
                if (
                    not isinstance(e, (list, tuple))
                    or len(e) not in (2, 3)
                    or not isinstance(e[0], str)
                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in e[1:])
                ):
                    raise GenotypeError(f"{cell}[{k}] must be an [op_name, input_index] pair or an "
                                        f"[op_name, input_index, node] triple, got {e!r}")
                pairs.append((e[0], e[1]))
                nodes.append(e[2] if len(e) == 3 else None)
            if any(n is None for n in nodes) and not all(n is None for n in nodes):
                raise GenotypeError(f"{cell} mixes [op, input] pairs with [op, input, node] triples")
            kw[cell] = pairs
            kw[cell + "_nodes"] = None if not nodes or nodes[0] is None else nodes
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
        atomic_write_text(path, self.to_json() + "\n")

    def __str__(self) -> str:  # the original DARTS log format, which parse_genotype_text reads back
        cells = []
        for cell in CELLS:
            explicit = getattr(self, cell + "_nodes") is not None
            edges = [(op, j, n) if explicit else (op, j) for op, j, n in self.edges(cell)]
            cells.append(f"{cell}={edges}, {cell}_concat={list(getattr(self, cell + '_concat'))}")
        return f"Genotype({', '.join(cells)})"


def parse_genotype_text(text: str, check_ops: bool = True) -> Genotype:
    """Parse ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)`` as printed by the
    original DARTS logs, without evaluating it: only literals and ``range(a, b)`` are accepted."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise GenotypeError(f"genotype text is not valid: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError):  # absurd nesting, NUL bytes, a number of thousands of digits
        raise GenotypeError("genotype text is not valid: nested too deeply, too long a number, or NUL bytes") from None
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
    except ValueError as e:  # e.g. an integer of thousands of digits
        raise GenotypeError(f"{path}: not a usable genotype ({str(e).splitlines()[0][:120]})") from None
    try:
        return Genotype.from_dict(d, check_ops)
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------------------
# The discretizer: cell rules that turn op strengths (rows = edges in node order, columns = primitives) into a cell

#: the cell rules of :func:`derive_genotype`
CELL_RULES = ("darts", "pairs", "threshold")


def num_edges(steps: int) -> int:
    """Edges of a DARTS cell with ``steps`` intermediate nodes: node i reads the 2+i nodes before it."""
    return sum(2 + i for i in range(steps))


def _rows(W, steps):
    """``(node, first_row, rows)`` of every intermediate node: node ``2+i`` has the ``2+i`` rows of its edges."""
    start = 0
    for i in range(steps):
        yield 2 + i, start, W[start : start + 2 + i]
        start += 2 + i


def _darts_rule(W, primitives, steps, allowed, threshold=None):
    """Each node keeps the two incoming edges whose strongest allowed op is strongest, each with that op (DARTS,
    ``genotype()`` of the original ``model_search.py``). Ties go to the earlier edge / earlier op, as there."""
    gene, nodes = [], []
    for node, _, rows in _rows(W, steps):
        best = [max(allowed, key=lambda k: (row[k], -k)) for row in rows]
        for j in sorted(range(len(rows)), key=lambda j: -rows[j][best[j]])[:2]:
            gene.append((primitives[best[j]], j))
            nodes.append(node)
    return gene, nodes


def _pairs_rule(W, primitives, steps, allowed, threshold=None):
    """Each node keeps its two strongest (op, input) pairs over all incoming edges and allowed ops, so both may read
    one input (GDAS, ``_parse`` of AutoDL-Projects' ``search_model_gdas_nasnet.py``). Ties keep the order edge, then
    op, as its stable sort does."""
    gene, nodes = [], []
    for node, _, rows in _rows(W, steps):
        pairs = [(rows[j][k], j, k) for j in range(len(rows)) for k in allowed]
        for _, j, k in sorted(pairs, key=lambda t: -t[0])[:2]:
            gene.append((primitives[k], j))
            nodes.append(node)
    return gene, nodes


def _threshold_rule(W, primitives, steps, allowed, threshold):
    """The DARTS rule's two edges per node, each kept only if its op's strength is at least ``threshold`` (FairDARTS,
    ``parse(..., 'threshold_sparse')`` in its ``utils.py``), so a node has 0, 1 or 2 ops.

    A node left without an op is absent; an edge that reads an absent node is dropped with it, as the authors'
    discrete cell skips such inputs. A cell in which nothing passes keeps the first node's strongest op, so that it
    still has an output (the authors' network cannot be built then)."""
    gene, nodes = _darts_rule(W, primitives, steps, allowed)
    kept = []
    for (op, j), node in zip(gene, nodes):
        row = W[sum(2 + i for i in range(node - 2)) + j]
        if row[primitives.index(op)] >= threshold:
            kept.append((op, j, node))
    while True:
        present = {0, 1} | {n for _, _, n in kept}
        pruned = [e for e in kept if e[1] in present]
        if len(pruned) == len(kept):
            break
        kept = pruned
    if not kept:
        op, j = gene[0]
        kept = [(op, j, 2)]
    return [(op, j) for op, j, _ in kept], [n for _, _, n in kept]


_RULES = {"darts": _darts_rule, "pairs": _pairs_rule, "threshold": _threshold_rule}


def _derive_cell(weights: torch.Tensor, primitives: Sequence[str], steps: int, excluded: set[int], rule: str = "darts",
                 threshold: float | None = None) -> tuple[list[Edge], list[int]]:
    """One cell by ``rule`` from ``weights`` (edges, K); returns the edges and the node each one feeds."""
    W = weights.detach().to("cpu", torch.float64).tolist()
    allowed = [k for k in range(len(primitives)) if k not in excluded]
    if not allowed:
        raise GenotypeError("every op of the search space is excluded from the derived cell")
    if rule not in _RULES:
        raise GenotypeError(f"unknown cell rule {rule!r}; choose from {', '.join(CELL_RULES)}")
    if rule == "threshold" and threshold is None:
        raise GenotypeError("the threshold cell rule needs a threshold")
    return _RULES[rule](W, tuple(primitives), steps, allowed, threshold)


def derive_genotype(
    weights_normal: torch.Tensor,
    weights_reduce: torch.Tensor,
    primitives: Sequence[str],
    steps: int = 4,
    multiplier: int | None = None,
    max_skip: int | None = None,
    rule: str = "darts",
    threshold: float | None = None,
) -> Genotype:
    """Discretize op strengths (rows = edges, columns = ``primitives``) into a :class:`Genotype`.

    ``rule``: ``darts`` (two strongest edges per node, each with its strongest op), ``pairs`` (the two strongest
    (op, edge) pairs per node, GDAS) or ``threshold`` (the DARTS edges, each kept only if its op reaches
    ``threshold``, FairDARTS; the cells may be sparse). The ``none`` op (any op registered with ``is_zero``) is never
    chosen; it is found by name in ``primitives``, never by a fixed column. ``multiplier`` (default ``steps``) nodes
    are concatenated; the threshold rule concatenates the nodes it keeps. ``max_skip`` (P-DARTS / DARTS+) keeps at
    most that many ``skip_connect`` in the normal cell, replacing the weakest ones by their edge's next-best op.
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
        normal = _limit_skips(weights_normal, primitives, steps, excluded, max_skip, rule, threshold)
    else:
        normal = _derive_cell(weights_normal, primitives, steps, excluded, rule, threshold)
    reduce = _derive_cell(weights_reduce, primitives, steps, excluded, rule, threshold)
    multiplier = steps if multiplier is None else multiplier
    concat = tuple(range(2 + steps - multiplier, steps + 2))
    cells = {}
    for name, (edges, nodes) in (("normal", normal), ("reduce", reduce)):
        cells[name] = edges
        cells[name + "_nodes"] = nodes
        cells[name + "_concat"] = tuple(sorted(set(nodes))) if rule == "threshold" else concat
    return Genotype(primitives=primitives, **cells)


def _limit_skips(weights, primitives, steps, excluded, max_skip, rule="darts", threshold=None):
    """Re-derive the normal cell with the weakest skip connections removed until at most ``max_skip`` remain
    (P-DARTS Sec. 3.3: the skip op is masked on those edges and the rule applied again)."""
    skip = primitives.index("skip_connect")
    w = weights.detach().to("cpu", torch.float64).clone()
    while True:
        gene, nodes = _derive_cell(w, primitives, steps, excluded, rule, threshold)
        if sum(op == "skip_connect" for op, _ in gene) <= max_skip:
            return gene, nodes
        # find the kept skip edge with the smallest skip strength and mask skip on it
        weakest = None
        for (op, j), node in zip(gene, nodes):
            if op == "skip_connect":
                row = num_edges(node - 2) + j
                if weakest is None or w[row, skip] < w[weakest, skip]:
                    weakest = row
        w[weakest, skip] = float("-inf")
