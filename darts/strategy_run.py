"""A multi-trial search run: a strategy proposes discrete cells of the space, an evaluator scores them, one line of
``metrics.jsonl`` per evaluation; the best cell is the run's ``genotype.json``. Resumable after any evaluation, with
the run scaffolding a one-shot search uses (:mod:`darts.run.session`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from .config import SearchSetup, network_settings
from .data import DataBundle, load_data
from .engine import resolve_device
from .run.checkpoint import fingerprint
from .run.session import Run
from .strategies import EVALUATORS, EvalContext

log = logging.getLogger(__name__)


@dataclass
class StrategyResult:
    """What a multi-trial search returns: the best ``genotype`` and its ``score``, the ``run_dir``, and one
    ``metrics`` record per evaluation (as in ``metrics.jsonl``)."""

    genotype: object
    score: float
    run_dir: str
    metrics: list = field(default_factory=list)
    model: None = None  # a multi-trial search trains no supernet
    stopped: None = None


def run_strategy(setup: SearchSetup, data: DataBundle | None = None) -> StrategyResult:
    """Run (or resume) the multi-trial search ``setup`` describes: ``budget_evals`` cells proposed by its
    strategy and scored by its evaluator, on ``data`` (default: the config's data set, loaded only if the
    evaluator needs it)."""
    cfg, space, strategy = setup.cfg, setup.space, setup.strategy
    with Run.start("search", setup.to_dict(), fingerprint=fingerprint(setup.fingerprint_options()), out=cfg.out,
                   resume=cfg.resume, device=resolve_device(cfg.device),
                   default_out=f"runs/{cfg.strategy}-{cfg.space}-%Y%m%d-%H%M%S",
                   meta={"primitives": list(cfg.primitives)}) as run:
        loaded = [data]

        def get_data():
            if loaded[0] is None:
                loaded[0] = load_data(cfg.dataset, cfg.data, cfg.download, cfg.image_size, augment=False)
            return loaded[0]

        encoding = space.encoding(cfg.primitives)
        strategy.begin(encoding, cfg.seed)
        evaluator = EVALUATORS.get(cfg.evaluator)(EvalContext(space, cfg, network_settings(space, cfg.dataset),
                                                              get_data, run.device))
        best, budget = Best(), strategy.budget(cfg.budget_evals)
        start, _ = run.restore(budget, expect={"strategy_name": cfg.strategy, "space": cfg.space},
                               belongs="it belongs to another strategy or space", strategy=strategy, best=best)
        run.commit()
        log.info("multi-trial search: strategy %s (%s), evaluator %s, %d evaluations; space %s (%s cells: %s); "
                 "run dir %s", strategy.describe(), strategy.paper, evaluator.describe(), budget,
                 space.name, f"{encoding.size():,}", encoding.describe, run.dir.path)
        if start:
            log.info("resumed after evaluation %d", start)

        for n in range(start, budget):
            t0 = time.time()
            with run.epoch(n):
                x = strategy.ask()
                genotype = encoding.decode(x)
                score, extra = evaluator.score(genotype, n)
                strategy.tell(x, score)
            best.update(genotype, score)
            record = {"epoch": n + 1, "evaluation": n + 1, "arch": str(genotype), "score": _finite(score),
                      "best_score": _finite(best.score), "best_arch": best.arch, **extra,
                      **space.epoch_metrics(genotype, cfg.dataset), "eval_time_s": round(time.time() - t0, 4)}
            if (n + 1) % max(1, budget // 20) == 0 or n + 1 == budget:
                log.info("evaluation %d/%d  score %.4g  best %.4g  %s", n + 1, budget, score, best.score,
                         best.arch)
            run.end_epoch(record, {"strategy_name": cfg.strategy, "space": cfg.space,
                                   "strategy": strategy.state_dict(), "best": best.state_dict()})
        records = run.dir.read_metrics() if run.main else []
        genotype = space.genotype_from_dict(best.genotype) if best.genotype is not None else None
        if run.main and genotype is not None:
            genotype.save(run.dir.file("genotype.json"))
            log.info("best cell (score %.4g) written to %s: %s", best.score, run.dir.file("genotype.json"), genotype)
            for k, v in space.epoch_metrics(genotype, cfg.dataset).items():
                log.info("  %s = %s", k, v)
        return StrategyResult(genotype, best.score, run.dir.path, records)


class Best:
    """The best cell evaluated so far (the first of equal scores)."""

    def __init__(self):
        self.score, self.arch, self.genotype = float("-inf"), None, None

    def update(self, genotype, score: float) -> None:
        if self.genotype is None or score > self.score:
            self.score, self.arch, self.genotype = float(score), str(genotype), genotype.to_dict()

    def state_dict(self) -> dict:
        return {"score": self.score, "arch": self.arch, "genotype": self.genotype}

    def load_state_dict(self, state: dict) -> None:
        self.score, self.arch, self.genotype = float(state["score"]), state["arch"], state["genotype"]


def _finite(v: float):
    return v if math.isfinite(v) else None
