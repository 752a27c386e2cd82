"""What every run shares, search and retraining alike: the run directory (new or resumed), torchrun's process
group, the log file, restoring the checkpoint, the end of an epoch (metrics, TensorBoard, checkpoint) and a clear
message when a loss turns non-finite.

Only rank 0 writes, and nothing is written before the set-up succeeded: a run that fails to start (bad data, a
checkpoint of another run) leaves no directory behind and changes nothing in an existing one. A run is a context
manager::

    with Run.start("search", config, out=..., resume=..., device=...) as run:
        ...                                          # data, model, optimizers
        start, state = run.restore(model=model, w_opt=w_opt, ...)
        run.commit()                                 # now the directory is created (or the resumed one updated)
        for epoch in range(start, epochs):
            with run.epoch(epoch):
                ...
            run.end_epoch(record, state)
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager

from ..errors import CheckpointError, NonFiniteLossError
from .checkpoint import load_checkpoint, restoring, rng_state, save_checkpoint, set_rng_state
from .distributed import DistEnv, barrier, init_distributed, shutdown
from .rundir import CHECKPOINT, RunDir

log = logging.getLogger(__name__)


class Run:
    """One run's scaffolding. Build it with :meth:`start`."""

    def __init__(self, kind: str, rundir: RunDir, env: DistEnv, resumed: bool, config: dict, meta: dict):
        self.kind, self.dir, self.env, self.resumed = kind, rundir, env, resumed
        self.device = env.device
        self.main = env.is_main
        self._config, self._meta = config, meta
        self._restored_epoch = 0
        self._log_handler = None

    @classmethod
    def start(cls, kind: str, config: dict, *, out: str | None, resume: str | None, device, default_out: str,
              meta: dict | None = None) -> "Run":
        """Prepare a run: ``resume`` names an existing run directory (its config was already read and checked), or
        ``out`` (default ``default_out``, a ``time.strftime`` pattern) a new one, which must not hold a run.
        Joins torchrun's process group on ``device``. Writes nothing: see :meth:`commit`."""
        if resume:
            rundir, resumed = RunDir.open_existing(resume), True
        else:
            path = out or time.strftime(default_out)
            RunDir.check_new(path)
            rundir, resumed = RunDir(path), False
        return cls(kind, rundir, init_distributed(device), resumed, config, meta or {})

    def commit(self) -> None:
        """The set-up succeeded: create a new run's directory and ``config.json`` (with ``meta``), or trim a
        resumed run's ``metrics.jsonl`` to its checkpoint; then log to ``log.txt`` too (rank 0)."""
        if not self.resumed:
            barrier(self.env)  # every rank has checked the directory before rank 0 creates it
            if self.main:
                RunDir.create(self.dir.path)
                self.dir.write_config(self._config, kind=self.kind, world_size=self.env.world_size, **self._meta)
        elif self.main:
            self.dir.truncate_metrics(self._restored_epoch)
        if self.main:
            self._log_handler = self.dir.attach_log_file()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Close TensorBoard and the log file and leave the process group; safe to call twice."""
        if self.main:
            self.dir.close()
            if self._log_handler is not None:
                logging.getLogger().removeHandler(self._log_handler)
                self._log_handler.close()
                self._log_handler = None
        shutdown(self.env)

    # -- checkpoints ------------------------------------------------------------------------------------
    def restore(self, expect: dict | None = None, belongs: str = "it belongs to another search space or method",
                **objects) -> tuple[int, dict]:
        """Load the run's checkpoint into ``objects`` (name -> object with ``load_state_dict``; the names are the
        checkpoint's keys) and the RNG state; returns ``(completed epochs, the whole state)``, ``(0, {})`` for a
        new run or one killed before its first checkpoint.

        ``expect``: checkpoint keys and the values this run needs there; a mismatch is a :class:`CheckpointError`
        naming the key and ending with ``belongs``.
        """
        if not self.resumed:
            return 0, {}
        path = self.dir.file(CHECKPOINT)
        if not os.path.exists(path):
            log.warning("%s has no checkpoint yet (killed during the first epoch); starting from epoch 0",
                        self.dir.path)
            return 0, {}
        state = load_checkpoint(path, kind=self.kind)
        for key, value in (expect or {}).items():
            if state.get(key) != value:
                shown = lambda v: repr(v) if len(repr(v)) < 80 else repr(v)[:77] + "..."  # noqa: E731
                raise CheckpointError(f"{path} was written by a run with {key} = {shown(state.get(key))}, but this "
                                      f"run has {key} = {shown(value)}: {belongs}")
        with restoring(path):
            for name, obj in objects.items():
                obj.load_state_dict(state[name])
            set_rng_state(state["rng"])
            epoch = int(state["epoch"])
        self._restored_epoch = epoch
        return epoch, state

    def end_epoch(self, record: dict, state: dict) -> None:
        """Rank 0: append ``record`` to ``metrics.jsonl`` and TensorBoard, then save ``state`` (with the epoch, the
        run's kind and the RNG state) as the checkpoint. Every rank waits for it."""
        if self.main:
            self.dir.append_metrics(record)
            save_checkpoint({"kind": self.kind, "epoch": record["epoch"], **state, "rng": rng_state()},
                            self.dir.file(CHECKPOINT))
        barrier(self.env)

    @contextmanager
    def epoch(self, epoch: int):
        """Around one epoch's training: a non-finite loss becomes one message that says what was kept."""
        try:
            yield
        except NonFiniteLossError as e:
            kept = f"the last good checkpoint (epoch {epoch}) is kept in {self.dir.path}" if epoch else \
                "no epoch had completed, so there is no checkpoint"
            raise NonFiniteLossError(f"{e}; {kept}. Try a lower --lr or --arch-lr in a new run.") from None
