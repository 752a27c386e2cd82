"""Search methods: DARTS and its successors, each a small plug-in at the mixed-op seam and the bilevel step.

``get_method(name, **options)`` builds one; ``list_methods()`` names them. Register your own with
``@register_method`` on a :class:`SearchMethod` subclass (see ``base.py`` for the hooks).
"""
from __future__ import annotations

from .base import SearchMethod, channel_shuffle
from .registry import METHODS, get_method, get_method_class, list_methods, register_method

# The built-in methods register themselves on import, in the order --help lists them.
from .darts import DARTS  # noqa: E402
from .pcdarts import PCDARTS  # noqa: E402
from .gdas import GDAS  # noqa: E402
from .fairdarts import FairDARTS  # noqa: E402
from .drnas import DrNAS  # noqa: E402
from .darts_minus import DARTSMinus  # noqa: E402
from .sdarts import SDARTSRS  # noqa: E402
from .beta_darts import BetaDARTS  # noqa: E402
from .enas import ENAS  # noqa: E402
from .rsws import RSWS  # noqa: E402
from .spos import SPOS  # noqa: E402

__all__ = ["SearchMethod", "METHODS", "register_method", "get_method", "get_method_class", "list_methods",
           "channel_shuffle", "DARTS", "PCDARTS", "GDAS", "FairDARTS", "DrNAS", "DARTSMinus", "SDARTSRS",
           "BetaDARTS", "ENAS", "RSWS", "SPOS"]
