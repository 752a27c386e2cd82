"""SPOS (Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020): train the
shared weights on uniformly random cells, then search the trained supernet by evolution.

Training is :class:`darts.methods.rsws.RSWS`'s (one uniform cell per step). The evolution follows the authors'
``src/Search/search.py``: a population of ``population`` cells, of which the ``top`` best are the parents; each
generation makes ``mutations`` children (a random parent, each encoding position resampled with probability
``mutation_prob``) and ``crossovers`` (each position from one of two random parents), rejects cells already seen
(at most ten tries per child), fills up with random cells, and keeps the best ``top``. Each cell is scored by its
accuracy on ``val_batches`` validation batches after its BatchNorm statistics are recomputed on ``bn_batches``
training batches (Sec. 3.4); the validation batches come from the advancing stream, as the authors' persistent
iterator. The result is the best cell ever scored. The paper's FLOPs limit is not applied (``--cost`` measures
cells; no candidate is refused).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import ConfigError
from ..options import option
from ..strategies.base import _rng_state, _rng_tuple
from .registry import register_method
from .single_path import SinglePathMethod, batch_accuracy, recalibrated_bn

log = logging.getLogger(__name__)


def mutate(x, sizes, prob: float, rng) -> list[int]:
    """Each position of ``x`` resampled uniformly over its ``sizes[i]`` values with probability ``prob``."""
    return [rng.randrange(s) if rng.random() < prob else v for v, s in zip(x, sizes)]


def crossover(a, b, rng) -> list[int]:
    """Each position from ``a`` or ``b`` with probability 1/2."""
    return [u if rng.random() < 0.5 else v for u, v in zip(a, b)]


@register_method
class SPOS(SinglePathMethod):
    """Uniform single-path training, then evolution over the trained supernet (see the module docstring).

    Options:
        population, top, mutations, crossovers, mutation_prob, generations: the evolution (the authors':
            50, 10, 25, 25, 0.1, 20).
        bn_batches: training batches that recompute BatchNorm statistics before each cell is scored (200 of 128).
        val_batches: validation batches each cell is scored on (40 of 200).
    """

    name = "spos"
    paper = "Guo et al., Single Path One-Shot Neural Architecture Search with Uniform Sampling, ECCV 2020"
    flag_prefix = "spos"

    @dataclass
    class Options:
        population: int = option(50, "cells per generation", positive=True, max=10**6)
        top: int = option(10, "parents kept per generation (top-k)", positive=True, max=10**6)
        mutations: int = option(25, "children by mutation per generation", nonneg=True, max=10**6)
        crossovers: int = option(25, "children by crossover per generation", nonneg=True, max=10**6)
        mutation_prob: float = option(0.1, "probability that a mutation resamples each encoding position", min=0,
                                      max=1)
        generations: int = option(20, "generations of the evolution", positive=True, max=10**6)
        bn_batches: int = option(200, "training batches that recompute BatchNorm statistics for each cell",
                                 nonneg=True, max=10**6)
        val_batches: int = option(40, "validation batches each cell is scored on", positive=True, max=10**6)

    presets = {
        "small": dict(spos_population=10, spos_top=4, spos_mutations=4, spos_crossovers=4, spos_generations=3,
                      spos_bn_batches=4, spos_val_batches=2),
    }

    def setup(self):
        o = self.options
        if o.top > o.population:
            raise ConfigError(f"--spos-top ({o.top}) is larger than --spos-population ({o.population})")
        if o.mutations + o.crossovers > o.population:
            raise ConfigError(f"--spos-mutations + --spos-crossovers ({o.mutations + o.crossovers}) exceed "
                              f"--spos-population ({o.population})")

    def score(self, model, cell, ctx) -> float:
        """Validation accuracy of ``cell`` on the shared weights, after recomputing its BatchNorm statistics."""
        o = self.options
        with self.showing(cell), recalibrated_bn(model, ctx.train_batches(o.bn_batches), ctx):
            return batch_accuracy(model, [next(ctx.val_stream) for _ in range(o.val_batches)], ctx)

    def final_genotype(self, model, ctx):
        o, enc, rng = self.options, self.encoding, self.rng("evolution")
        seen: dict[tuple, float] = {}

        def add(x, out):
            key = tuple(x)
            if key in seen:
                return False
            seen[key] = self.score(model, enc.decode(x), ctx)
            out.append(key)
            return True

        def children(make, n, parents):
            out, tries = [], 0
            while len(out) < n and tries < 10 * n and parents:
                tries += 1
                add(make(parents), out)
            return out

        parents: list[tuple] = []
        start = 0
        saved = ctx.load_phase("selection") if ctx.load_phase is not None else None
        if saved is not None:  # a killed evolution continues after its last whole generation
            start = int(saved["generation"])
            seen.update({tuple(k): float(v) for k, v in saved["seen"]})
            parents = [tuple(p) for p in saved["parents"]]
            rng.setstate(_rng_tuple(saved["draws"]))
            ctx.val_stream.load_state_dict(saved["val_stream"])
        for gen in range(start, o.generations):
            pool = children(lambda p: mutate(rng.choice(p), enc.sizes, o.mutation_prob, rng), o.mutations, parents)
            pool += children(lambda p: crossover(rng.choice(p), rng.choice(p), rng), o.crossovers, parents)
            tries = 0
            while len(pool) < o.population and tries < 10 * o.population:
                tries += 1
                add(enc.random(rng), pool)
            parents = sorted(set(parents) | set(pool), key=lambda k: (-seen[k], k))[: o.top]
            log.info("spos: generation %d/%d: best %.2f%%, %d cells scored", gen + 1, o.generations,
                     100 * seen[parents[0]], len(seen))
            if ctx.save_phase is not None and gen + 1 < o.generations:
                ctx.save_phase("selection", {"generation": gen + 1, "seen": [[list(k), v] for k, v in seen.items()],
                                             "parents": [list(p) for p in parents],
                                             "draws": _rng_state(rng),
                                             "val_stream": ctx.val_stream.state_dict()})
        best = min(seen, key=lambda k: (-seen[k], k))
        return enc.decode(list(best))

    def describe(self):
        o = self.options
        return (f"spos (uniform single paths; then evolution: population {o.population}, top {o.top}, "
                f"{o.generations} generations)")
