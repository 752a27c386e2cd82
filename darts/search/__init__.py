"""The supernet of a differentiable search: mixed ops, search cells, the network and its α."""
from .mixed_op import MixedOp
from .supernet import ArchParameters, SearchCell, Supernet

__all__ = ["MixedOp", "SearchCell", "Supernet", "ArchParameters"]
