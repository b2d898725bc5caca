"""Layers: a torch.autograd.Function beside its plain-torch reference, judged by its
vector-Jacobian product. The built-in ones register themselves on import, through the same API
as plugins."""

from . import rmsnorm, swiglu  # noqa: F401
from .base import LAYERS, Layer, get_layer, is_layer, layer_names, register_layer

__all__ = ["LAYERS", "Layer", "get_layer", "is_layer", "layer_names", "register_layer"]
