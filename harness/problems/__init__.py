"""Problems: the built-in ones register themselves on import, through the same API as plugins."""

from . import chain, linear, linear1d, logistic, mlp, scalar, softmax, vjp, weightsum  # noqa: F401
from .base import Problem, get_problem, problem_names, register_problem

__all__ = ["Problem", "get_problem", "problem_names", "register_problem"]
