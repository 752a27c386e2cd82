"""``python -m darts``: the ``darts-forge`` command."""
import sys

from .cli import main

sys.exit(main())
