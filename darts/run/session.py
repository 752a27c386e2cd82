"""What every run shares, search and retraining alike: the run directory (new or resumed) and its lock, torchrun's
process group, the log file, restoring the checkpoint, the end of an epoch (metrics, TensorBoard, checkpoint) and a
clear message when a loss turns non-finite.

One process writes a run directory at a time (:mod:`darts.run.lock`; rank 0 under torchrun), and nothing is written
before the set-up and the resume checks succeed: a run that fails to start (bad data, a checkpoint of another run)
leaves no new directory behind and changes nothing in an existing one. A run is a context manager::

    with Run.start("search", config, fingerprint=..., out=..., resume=..., device=...) as run:
        ...                                          # data, model, optimizers
        start, state = run.restore(epochs, model=model, w_opt=w_opt, ...)
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
import traceback
from contextlib import contextmanager

from ..errors import CheckpointError, DartsError, NonFiniteLossError
from .checkpoint import LAYOUT, load_checkpoint, restoring, rng_state, save_checkpoint, set_rng_state
from .distributed import DistEnv, barrier, broadcast_flag, init_distributed, shutdown
from .lock import RunInUseError, RunLock
from .rundir import CHECKPOINT, RunDir, RunDirError, _why

log = logging.getLogger(__name__)


class Run:
    """One run's scaffolding. Build it with :meth:`start`."""

    def __init__(self, kind: str, rundir: RunDir, env: DistEnv, resumed: bool, config: dict, fingerprint: str,
                 meta: dict):
        self.kind, self.dir, self.env, self.resumed = kind, rundir, env, resumed
        self.device = env.device
        self.main = env.is_main
        self._config, self._fingerprint, self._meta = config, fingerprint, meta
        self._restored_epoch = 0
        self._log_handler = None
        self._lock: RunLock | None = None
        self._made_dir = False
        self.committed = False

    @classmethod
    def start(cls, kind: str, config: dict, *, fingerprint: str, out: str | None, resume: str | None, device,
              default_out: str, meta: dict | None = None) -> "Run":
        """Prepare a run: ``resume`` names an existing run directory (its config was already read and checked), or
        ``out`` (default ``default_out``, a ``time.strftime`` pattern) a new one, which must not hold a run.
        Joins torchrun's process group on ``device`` and takes the directory's lock (rank 0). Writes nothing that
        :meth:`close` would not take back, unless :meth:`commit` is called."""
        if resume:
            rundir, resumed = RunDir.open_existing(resume), True
        else:
            path = out or time.strftime(default_out)
            RunDir.check_new(path)
            rundir, resumed = RunDir(path), False
        run = cls(kind, rundir, init_distributed(device), resumed, config, fingerprint, meta or {})
        error = None
        if run.main:
            try:
                run._take_lock()
            except DartsError as e:
                error = e
        if broadcast_flag(error is not None, run.env):  # every rank stops if rank 0 could not take the lock
            run.close()
            raise error if error is not None else RunInUseError(f"rank 0 could not take {rundir.path!r}")
        return run

    def _take_lock(self) -> None:
        if not self.resumed and not os.path.isdir(self.dir.path):
            RunDir.create(self.dir.path)
            self._made_dir = True
        lock = RunLock(self.dir.path)
        try:
            lock.acquire()
        except BaseException:
            # Lost to another run: its lock file and the directory are now its own, even if this process created
            # them a moment before, so close() must take nothing away.
            self._made_dir = False
            raise
        self._lock = lock
        if not self.resumed:
            RunDir.check_new(self.dir.path)  # again, under the lock: another run may have just finished here

    def commit(self) -> None:
        """The set-up succeeded: write a new run's ``config.json`` (with ``meta``), or trim a resumed run's
        ``metrics.jsonl`` to its checkpoint; then log to ``log.txt`` too (rank 0)."""
        if not self.resumed:
            barrier(self.env)
            if self.main:
                self.dir.write_config(self._config, kind=self.kind, world_size=self.env.world_size,
                                      fingerprint=self._fingerprint, **self._meta)
        elif self.main:
            self.dir.truncate_metrics(self._restored_epoch)
        if self.main:
            self._log_handler = self.dir.attach_log_file()
        self.committed = True

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind, e, tb) -> bool:
        if e is not None and not isinstance(e, (DartsError, KeyboardInterrupt)) and self._log_handler is not None:
            # an internal error: the whole traceback goes to the run's log, the console gets one line (cli.run_main)
            self._log_handler.handle(logging.LogRecord(__name__, logging.ERROR, __file__, 0,
                                                       "internal error:\n" + "".join(
                                                           traceback.format_exception(kind, e, tb)), None, None))
            e.darts_log = self.dir.file("log.txt")
        self.close()
        return False

    def close(self) -> None:
        """Close TensorBoard and the log file, give the lock back and leave the process group. A run that never
        committed takes back what it made: the new directory it created, the lock file's holder."""
        if self.main:
            self.dir.close()
            if self._log_handler is not None:
                logging.getLogger().removeHandler(self._log_handler)
                self._log_handler.close()
                self._log_handler = None
            if self._lock is not None:
                if not self.committed:
                    self._lock.restore()
                    try:
                        if self._lock.created:
                            os.remove(self._lock.file)
                        if self._made_dir:
                            os.rmdir(self.dir.path)  # only if empty: it held nothing but our lock
                    except OSError:
                        pass
                self._lock.release()
                self._lock = None
        shutdown(self.env)

    # -- checkpoints ------------------------------------------------------------------------------------
    def restore(self, epochs: int, expect: dict | None = None,
                belongs: str = "it belongs to another search space or method", **objects) -> tuple[int, dict]:
        """Load the run's checkpoint into ``objects`` (name -> object with ``load_state_dict``; the names are the
        checkpoint's keys) and the RNG state; returns ``(completed epochs, the whole state)``, ``(0, {})`` for a
        new run or one killed before its first checkpoint.

        Everything is checked before anything is loaded, and a mismatch is a :class:`CheckpointError`: the
        checkpoint's layout version, ``expect`` (keys and the values this run needs there; the message ends with
        ``belongs``), the fingerprint of the options (a checkpoint of another run, or a ``config.json`` edited
        since), an ``epoch`` that is an integer in ``1..epochs``, and every key the run reads.
        """
        if not self.resumed:
            return 0, {}
        path = self.dir.file(CHECKPOINT)
        if not os.path.exists(path):
            log.warning("%s has no checkpoint yet (killed during the first epoch); starting from epoch 0",
                        self.dir.path)
            return 0, {}
        state = load_checkpoint(path, kind=self.kind)
        if state.get("layout") != LAYOUT:
            raise CheckpointError(f"{path} has checkpoint layout {state.get('layout')!r}; this version of "
                                  f"darts-forge reads layout {LAYOUT}: start a new run")
        shown = lambda v: repr(v) if len(repr(v)) < 80 else repr(v)[:77] + "..."  # noqa: E731
        for key, value in (expect or {}).items():
            if state.get(key) != value:
                raise CheckpointError(f"{path} was written by a run with {key} = {shown(state.get(key))}, but this "
                                      f"run has {key} = {shown(value)}: {belongs}")
        if state.get("fingerprint") != self._fingerprint:
            raise CheckpointError(f"{path} was written by a run with other options than {self.dir.file('config.json')}"
                                  " describes (copied from another run, or config.json edited since): nothing "
                                  "was changed")
        epoch = state.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs:
            raise CheckpointError(f"{path}: epoch {shown(epoch)} is not a completed epoch of this run (1..{epochs})")
        missing = [k for k in (*objects, "rng") if k not in state]
        if missing:
            raise CheckpointError(f"{path} lacks {', '.join(missing)}")
        with restoring(path):
            for name, obj in objects.items():
                obj.load_state_dict(state[name])
            set_rng_state(state["rng"])
        self._restored_epoch = epoch
        return epoch, state

    def end_epoch(self, record: dict, state: dict, heatmaps: dict | None = None) -> None:
        """Rank 0: append ``record`` to ``metrics.jsonl`` and TensorBoard (with ``heatmaps``, tag -> matrix), then
        save ``state`` (with the epoch, the run's kind, the options' fingerprint and the RNG state) as the
        checkpoint. Every rank waits for it."""
        if self.main:
            self.dir.append_metrics(record)
            for tag, matrix in (heatmaps or {}).items():
                self.dir.add_heatmap(tag, matrix, record["epoch"])
            save_checkpoint({"kind": self.kind, "epoch": record["epoch"], "fingerprint": self._fingerprint, **state,
                             "rng": rng_state()}, self.dir.file(CHECKPOINT))
        barrier(self.env)

    # -- a phase after the last epoch (a selection on the trained supernet), checkpointed step by step -------
    def phase_file(self, name: str) -> str:
        return self.dir.file(f"{name}.pt")

    def save_phase(self, name: str, state: dict) -> None:
        """Rank 0: save the state of a resumable phase that follows the last epoch (``RUN_DIR/<name>.pt``,
        atomically, with the options' fingerprint and the torch RNG state). Every rank waits for it."""
        reserved = {"kind", "phase", "fingerprint", "rng", "format", "layout"} & set(state)
        if reserved:
            raise ValueError(f"save_phase: the keys {sorted(reserved)} are the checkpoint's own")
        if self.main:
            save_checkpoint({"kind": self.kind, "phase": name, "fingerprint": self._fingerprint, **state,
                             "rng": rng_state()}, self.phase_file(name))
        barrier(self.env)

    def load_phase(self, name: str) -> dict | None:
        """The state :meth:`save_phase` last saved for ``name`` in this run (the RNG state restored), or None if
        there is none, or it belongs to other options (then it is ignored and the phase starts over)."""
        path = self.phase_file(name)
        if not self.resumed or not os.path.exists(path):
            return None
        state = load_checkpoint(path, kind=self.kind)
        if state.get("phase") != name or state.get("fingerprint") != self._fingerprint or "rng" not in state:
            log.warning("%s belongs to other options; the %s phase starts over", path, name)
            return None
        with restoring(path):
            set_rng_state(state["rng"])
        log.info("resuming the %s phase from %s", name, path)
        return state

    def end_phase(self, name: str) -> None:
        """Rank 0: the phase is over; its state file goes (a resumed run would redo the phase identically)."""
        if self.main and os.path.exists(self.phase_file(name)):
            os.remove(self.phase_file(name))
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
        except OSError as e:  # the file system failed while the data loaded, or while writing
            raise RunDirError(f"epoch {epoch + 1}: {_why(e)} ({getattr(e, 'filename', '') or 'a file'}); the last "
                              f"checkpoint in {self.dir.path} is intact") from None
