"""`graphed`: autograd's whole step captured once in a CUDA graph, then replayed.

A replay launches the captured kernels with one call, so graphed's time is autograd's kernels
without the host issuing them one by one: autograd's time minus graphed's is what its launches
(Python, dispatcher, autograd engine, launch latency) cost. `torch.cuda.CUDAGraph` rather than
`torch.compile(mode="reduce-overhead")`: a compiled graph would also fuse kernels, mixing fewer
launches with different kernels, and pay a compile per shape.

As in the "CUDA Graphs" section of the PyTorch CUDA semantics notes: a few warm-up steps on a side
stream, then capture with the gradients set to None, so that backward allocates `.grad` from the
graph's private pool; each replay rewrites those same tensors. The inputs are static by
construction: the parameters and the batches a pattern slices once are the stepper's own tensors,
and `sgd` updates the parameters in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .autograd import Autograd
from .base import register_method

WARMUP_STEPS = 3  # on a side stream before capture: lazy init and allocator state settle there


def capture(step: Callable[[], None], warmup: int = WARMUP_STEPS) -> torch.cuda.CUDAGraph:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()  # recorded, not run: the first replay computes it
    return graph


@register_method
class Graphed(Autograd):
    """Autograd's step captured in a CUDA graph and replayed: autograd without its launch cost."""

    name = "graphed"
    devices = ("cuda",)
    compiles = True  # its first call warms up and captures the graph: kept apart, in compile_s
    retains = False
    float64_twin = False  # the float64 twin runs on the CPU, where there is no graph to replay
    order, color, marker = 35, "#6baed6", "d"

    def wrap_step(self, step):
        if not all(p.is_cuda for p in self.params.values()):
            return step  # on the CPU (a float64 formula check, say) it is plain autograd
        graph: torch.cuda.CUDAGraph | None = None

        def replay() -> None:
            nonlocal graph
            if graph is None:
                graph = capture(step)
            graph.replay()

        return replay
