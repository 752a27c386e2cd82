"""What the scripts share: logging set-up and turning :class:`DartsError` into a one-line message."""
from __future__ import annotations

import logging
import os
import sys

from .errors import DartsError


def setup_logging(verbose: bool = False) -> None:
    """Log to stdout; under ``torchrun`` only rank 0 logs below WARNING."""
    level = logging.DEBUG if verbose else logging.INFO
    if int(os.environ.get("RANK", "0")) != 0:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)


def run_main(fn) -> int:
    """Call ``fn()``; a :class:`DartsError` prints ``error: <message>`` to stderr and exits 2, Ctrl-C exits 130."""
    try:
        fn()
        return 0
    except DartsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last completed epoch's checkpoint is kept (continue with --resume RUN_DIR)",
              file=sys.stderr)
        return 130
