"""Timing a layer's methods: forward, backward from a retained graph, and both (the "full" step),
paired in rounds, with peak memory per method. Fills each record's forward_median_s,
backward_median_s, time_median_s (forward + backward) and peak_bytes.

Not measured yet: the records keep those columns empty.
"""

from __future__ import annotations

import torch

from ..measure import TimingOptions


def time_layer(
    steps: dict, records: dict[str, dict], device: torch.device, threads: int, timing: TimingOptions
) -> None:
    """Time each method's `LayerStep` (harness.layers.family) and fill its record (by method name)."""
