"""How a layer's gradient is obtained: its Function, or its reference differentiated by
autograd (eager, or under torch.compile). Each declares what it can do beside it, as the
problems' methods do (harness.methods); a layer's cells run only these, in the pattern "full".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..methods.base import DEVICE_WORDS
from .base import Layer, Outputs


@dataclass(frozen=True)
class LayerMethod:
    name: str
    hand_written: bool  # the user's Function: its formula can be wrong, autograd's cannot
    compiles: bool  # its first call compiles: kept apart from the step's time
    float64_twin: bool  # it runs again in float64 to tell a wrong formula from rounding

    def callable(self, layer: Layer) -> Callable[..., Outputs]:
        if self.name == "function":
            return layer.function
        if self.compiles:
            return torch.compile(layer.reference, dynamic=False)
        return layer.reference

    def skip_reason(self, layer: type[Layer], dtype: str, device: str) -> str | None:
        if self.name != "function":
            return None
        if torch.device(device).type not in layer.function_devices:
            where = " and ".join(DEVICE_WORDS.get(d, d) for d in layer.function_devices)
            return f"the Function of {layer.name!r} runs on {where} only (function_devices)"
        if layer.function_dtypes is not None and dtype not in layer.function_dtypes:
            dtypes = ", ".join(layer.function_dtypes)
            return f"the Function of {layer.name!r} runs in {dtypes} only (function_dtypes)"
        return None

    def twin_skip_reason(self, layer: type[Layer]) -> str | None:
        if not self.float64_twin:
            return f"{self.name} has no float64 twin (a second compile): judged in the cell's dtype alone"
        if (
            self.name == "function"
            and layer.function_dtypes is not None
            and "float64" not in layer.function_dtypes
        ):
            return (
                f"the Function has no float64 (function_dtypes: {', '.join(layer.function_dtypes)}): "
                "judged in the cell's dtype alone"
            )
        return None


LAYER_METHODS = {
    m.name: m
    for m in (
        LayerMethod("function", hand_written=True, compiles=False, float64_twin=True),
        LayerMethod("autograd", hand_written=False, compiles=False, float64_twin=True),
        LayerMethod("compiled", hand_written=False, compiles=True, float64_twin=False),
    )
}


def get_layer_method(name: str) -> LayerMethod:
    try:
        return LAYER_METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r} for a layer; known: {', '.join(LAYER_METHODS)}") from None


def layer_skip_reason(layer: type[Layer], method: str, dtype: str, device: str, pattern: str) -> str | None:
    """Why a layer's cell cannot run, or None; an unknown method raises KeyError."""
    if pattern != "full":
        return f"a layer runs in the pattern full only, not {pattern}"
    return get_layer_method(method).skip_reason(layer, dtype, device)
