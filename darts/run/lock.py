"""One writer per run directory: an exclusive OS lock on ``RUN_DIR/.lock`` for a run's whole life.

The lock is ``flock`` on an open file, which the kernel drops when the process ends however it ends, so a SIGKILL
never leaves a stale lock. The file records its holder (PID, host, since when), which is what a refused second
process reports.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time

from ..errors import DartsError

LOCK = ".lock"


class RunInUseError(DartsError):
    """The run directory is held by another live process."""


class RunLock:
    """The lock of the run directory ``path`` (which must exist). :meth:`acquire`, then :meth:`release`."""

    def __init__(self, path: str):
        self.path = path
        self.file = os.path.join(path, LOCK)
        self._fd: int | None = None
        self._previous: bytes | None = None
        self.created = False  # this process made the lock file

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunInUseError` naming the directory and its holder. The lock file's
        content is kept so that :meth:`restore` can put it back if this run does not start after all."""
        try:
            try:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                self.created = True
            except FileExistsError:
                fd = os.open(self.file, os.O_RDWR)
        except OSError as e:
            raise DartsError(f"cannot open the lock of run directory {self.path!r}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read(fd)
            deadline = time.monotonic() + 2.0
            while not holder and time.monotonic() < deadline:  # the holder has the lock but not yet written its name
                time.sleep(0.02)
                holder = _read(fd)
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                who = f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}" if holder else "another process"
                since = f" since {holder['since']}" if holder.get("since") else ""
                raise RunInUseError(f"run directory {self.path!r} is in use by {who}{since}: one run writes a "
                                    "directory at a time; wait for it to end, or choose another --out") from None
            raise DartsError(f"cannot lock run directory {self.path!r}: {e.strerror}") from None
        self._fd = fd
        os.lseek(fd, 0, os.SEEK_SET)
        self._previous = os.read(fd, 1 << 16)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._write(json.dumps(info).encode() + b"\n")

    def restore(self) -> None:
        """Put back the lock file's content as it was before :meth:`acquire` (a refused start changes nothing)."""
        if self._fd is not None and self._previous is not None:
            self._write(self._previous)

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def _write(self, data: bytes) -> None:
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, data)
        except OSError:  # a full or read-only disk: the lock itself still holds
            pass


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 1 << 16).decode() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
