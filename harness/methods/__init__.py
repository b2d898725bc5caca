"""How a gradient is obtained: one file per kind, each method registering itself on import."""

from . import autograd, compiled, function, fused, graphed, hand_written  # noqa: F401
from .autograd import Autograd, AutogradGrad, Func
from .base import METHODS, Method, get_method, method_names, register_method
from .compiled import Compiled
from .function import Function
from .graphed import Graphed
from .hand_written import Manual, Numpy

__all__ = [
    "METHODS",
    "Autograd",
    "AutogradGrad",
    "Compiled",
    "Func",
    "Function",
    "Graphed",
    "Manual",
    "Method",
    "Numpy",
    "get_method",
    "method_names",
    "register_method",
]
