"""A dependency-free progress bar with ETA: redraws in place on a terminal, prints a line every 30 s otherwise."""
from __future__ import annotations

import sys
import time


def _fmt(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``with Progress(total, "epoch 3/50") as p: ... p.update(loss=0.4)``.

    Disabled entirely with ``enabled=False``. On a non-terminal stream (CI logs, files) it writes one plain line
    every ``interval`` seconds instead of carriage-return redraws."""

    def __init__(self, total: int, desc: str, enabled: bool = True, stream=None, interval: float = 30.0):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = 0.2 if self.tty else interval
        self.n, self.start, self.last = 0, time.monotonic(), 0.0
        self.postfix = ""

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        if postfix:
            self.postfix = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items())
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.interval or self.n == self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        eta = elapsed / self.n * (self.total - self.n) if self.n else 0.0
        frac = self.n / self.total if self.total else 1.0
        line = f"{self.desc} {self.n}/{self.total} [{_fmt(elapsed)}<{_fmt(eta)}] {self.postfix}"
        if self.tty:
            bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
            self.stream.write(f"\r{self.desc} |{bar}| {line[len(self.desc) + 1:]}\x1b[K")
        elif self.n != self.total:  # the per-epoch summary line replaces the final one
            self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled and self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        return False
