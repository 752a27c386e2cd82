"""Drawing genotypes: each cell as a DAG (inputs c_{k-2}, c_{k-1}, intermediate nodes, output c_{k}, edges
labelled with op names), written as PNG and SVG with graphviz ``dot`` when it is installed, else with matplotlib.

Command line: ``python -m darts.plot GENOTYPE_JSON_OR_LOG_OR_ZOO_NAME --out DIR``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from .errors import DartsError
from .genotype import Genotype, load_genotype
from .zoo import get_genotype

__all__ = ["plot_genotype", "main"]

_FORMATS = ("png", "svg")
_COLORS = {"input": "#a6cee3", "node": "#e0e0e0", "output": "#fdd9a0"}


# ---------------------------------------------------------------------------------------------------------
# The cell as a graph, independent of how it is drawn


def _node_name(j: int) -> str:
    """Genotype node index -> label: 0 and 1 are the cell inputs, 2+i is intermediate node i."""
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(j, str(j - 2))


def _cell_graph(edges, concat):
    """``(nodes, op_edges, out_edges)``: node labels in order, ``(src, dst, op)`` triples, and the ``(src, dst)``
    edges into the output ``c_{k}`` (one per concatenated node). ``edges`` are ``(op, input, node)`` triples."""
    present = sorted({0, 1} | {n for _, _, n in edges})
    nodes = [_node_name(j) for j in present] + ["c_{k}"]
    op_edges = [(_node_name(j), _node_name(n), op) for op, j, n in edges]
    out_edges = [(_node_name(j), "c_{k}") for j in concat]
    return nodes, op_edges, out_edges


# ---------------------------------------------------------------------------------------------------------
# graphviz


def _q(text: str) -> str:
    """A DOT double-quoted string (op names and prefixes are user input)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_source(title: str, nodes, op_edges, out_edges) -> str:
    lines = [f"digraph {_q(title)} {{", "  rankdir=LR;", '  node [style=filled, shape=rect, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for n in nodes:
        kind = "input" if n.startswith("c_{k-") else "output" if n == "c_{k}" else "node"
        lines.append(f'  {_q(n)} [fillcolor="{_COLORS[kind]}"{", shape=circle" if kind == "node" else ""}];')
    for src, dst, op in op_edges:
        lines.append(f"  {_q(src)} -> {_q(dst)} [label={_q(op)}];")
    for src, dst in out_edges:
        lines.append(f"  {_q(src)} -> {_q(dst)} [color=gray];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _draw_with_dot(dot: str, source: str, stem: str) -> list[str]:
    dot_path = stem + ".dot"
    with open(dot_path, "w", encoding="utf-8") as f:
        f.write(source)
    written = [dot_path]
    for fmt in _FORMATS:
        out = f"{stem}.{fmt}"
        try:
            subprocess.run([dot, f"-T{fmt}", "-o", out, dot_path], check=True, capture_output=True, timeout=120)
        except subprocess.CalledProcessError as e:
            detail = e.stderr.decode(errors="replace").strip()
            raise DartsError(f"graphviz dot failed on {dot_path}: {detail}") from None
        except subprocess.TimeoutExpired:
            raise DartsError(f"graphviz dot did not finish on {dot_path} within 120 s") from None
        written.append(out)
    return written


# ---------------------------------------------------------------------------------------------------------
# matplotlib fallback


def _positions(steps: int) -> dict[str, tuple[float, float]]:
    """Inputs stacked on the left, intermediate node i in column i+1 (zigzagging up and down so that edges
    between neighbours do not run through the nodes between them), the output on the right."""
    pos = {"c_{k-2}": (0.0, 2.0), "c_{k-1}": (0.0, -2.0), "c_{k}": (2.4 * (steps + 1), 0.0)}
    for i in range(steps):
        pos[str(i)] = (2.4 * (i + 1), 0.7 if i % 2 == 0 else -0.7)
    return pos


def _draw_with_matplotlib(title: str, edges, concat, stem: str) -> list[str]:
    try:
        from matplotlib.figure import Figure  # an optional dependency: imported only when drawing
        from matplotlib.patches import FancyArrowPatch
    except ImportError:
        raise DartsError(
            "drawing a genotype needs graphviz (the `dot` program: apt-get install graphviz, brew install "
            "graphviz or conda install graphviz) or matplotlib (pip install matplotlib)"
        ) from None
    nodes, op_edges, out_edges = _cell_graph(edges, concat)
    pos = _positions(max(n for _, _, n in edges) - 1)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    width, height = max(xs) - min(xs) + 2.0, max(ys) - min(ys) + 2.0
    fig = Figure(figsize=(1.1 * width, 1.1 * height))
    ax = fig.add_axes((0, 0, 1, 0.92))
    ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.set_aspect("equal")  # arcs are computed in display space; equal aspect keeps our label maths valid
    ax.axis("off")
    fig.suptitle(title)

    seen: dict[tuple[str, str], int] = {}
    for src, dst, label in [*op_edges, *((s, d, None) for s, d in out_edges)]:
        # a second edge between the same two nodes (NASNet's avg_pool twice from c_{k-2}) bends the other way
        k = seen.get((src, dst), 0)
        seen[(src, dst)] = k + 1
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        # bend away from the middle line: arcs from the upper input bulge upwards, from the lower downwards
        # (arc3's control point is chord midpoint + rad * (dy, -dx), so rad < 0 bends left-to-right edges up)
        rad = (-0.2 if y1 > y2 or (y1 == y2 and y1 > 0) else 0.2) * (1 if k == 0 else -1)
        ax.add_patch(FancyArrowPatch(
            (x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>", mutation_scale=12,
            shrinkA=16, shrinkB=16, color="black" if label else "gray", lw=1.0,
        ))
        if label:
            # arc3 draws a quadratic Bezier with control point chord-midpoint + rad * (dy, -dx); the label sits
            # at t=0.7, nearer the destination, where the edges of different nodes are well apart
            cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
            t = 0.7
            mx = (1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t**2 * x2
            my = (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t**2 * y2
            ax.text(mx, my, label, fontsize=8, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    for n in nodes:
        kind = "input" if n.startswith("c_{k-") else "output" if n == "c_{k}" else "node"
        ax.text(*pos[n], f"${n}$" if n.startswith("c_") else n, ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="round,pad=0.4" if kind != "node" else "circle,pad=0.4",
                          fc=_COLORS[kind], ec="black"))
    written = []
    for fmt in _FORMATS:
        out = f"{stem}.{fmt}"
        fig.savefig(out, format=fmt, dpi=150 if fmt == "png" else None)
        written.append(out)
    return written


# ---------------------------------------------------------------------------------------------------------
# Public API


def plot_genotype(genotype: Genotype, out_dir: str, name_prefix: str = "", backend: str = "auto") -> list[str]:
    """Draw the normal and the reduction cell of ``genotype`` into ``out_dir`` (created if needed).

    Writes ``{name_prefix}normal.png``, ``.svg`` and the same for ``reduce`` (plus the ``.dot`` sources when
    graphviz draws them). ``backend`` is ``auto`` (graphviz ``dot`` if on PATH, else matplotlib), ``dot`` or
    ``matplotlib``. Returns the paths written. Raises :class:`DartsError` if no backend is available.
    """
    genotype.validate(check_ops=False)  # drawing needs only a consistent graph, not registered ops
    if backend not in ("auto", "dot", "matplotlib"):
        raise DartsError(f"unknown plot backend {backend!r}; use auto, dot or matplotlib")
    dot = shutil.which("dot") if backend in ("auto", "dot") else None
    if backend == "dot" and dot is None:
        raise DartsError("graphviz `dot` is not on PATH; install graphviz or use the matplotlib backend")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for cell in ("normal", "reduce"):
        edges, concat = genotype.edges(cell), getattr(genotype, cell + "_concat")
        stem = os.path.join(out_dir, f"{name_prefix}{cell}")
        title = f"{name_prefix}{cell}".strip("_-. ") or cell
        if dot is not None:
            written += _draw_with_dot(dot, _dot_source(title, *_cell_graph(edges, concat)), stem)
        else:
            written += _draw_with_matplotlib(title, edges, concat, stem)
    return written


def _resolve(spec: str) -> Genotype:
    """A genotype file (JSON or DARTS log text) if ``spec`` is a path, else a published cell name."""
    if os.path.exists(spec):
        return load_genotype(spec)
    try:
        return get_genotype(spec)
    except DartsError as e:
        raise DartsError(f"{spec!r} is neither a genotype file nor a published cell name. {e}") from None


def main(argv=None, prog: str = "python -m darts.plot") -> int:
    """``darts-forge plot`` (``python -m darts.plot``): draw a genotype file or a published cell; prints the files
    written."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Draw the normal and reduction cells of a genotype as PNG and SVG.",
    )
    parser.add_argument("genotype", metavar="GENOTYPE_OR_NAME",
                        help="a genotype JSON file, a file with the DARTS log text Genotype(...), or a published "
                        "cell name such as DARTS_V2 (see darts.zoo)")
    parser.add_argument("--out", default=".", metavar="DIR", help="output directory (default: current directory)")
    parser.add_argument("--prefix", default="", help="prefix for the file names, e.g. 'darts_v2_'")
    parser.add_argument("--backend", choices=("auto", "dot", "matplotlib"), default="auto",
                        help="auto: graphviz dot if installed, else matplotlib")
    args = parser.parse_args(argv)
    try:
        paths = plot_genotype(_resolve(args.genotype), args.out, args.prefix, args.backend)
    except DartsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
