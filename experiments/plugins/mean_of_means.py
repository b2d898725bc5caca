"""The accumulation loop that trains with a mean of micro-batch means: each micro-batch's loss
divided by k before backward(), the loop of transformers before its 2024 fix. Right for a loss
that is a mean over rows in equal micro-batches; biased for a token loss, a mean over the valid
targets, whenever the micro-batches hold different numbers of them. Hold your own loop against
the harness the same way: a Pattern whose `step` is your loop.

    gradbench run experiments/lm-head.yaml  (patterns: [full, "mean_of_means:4"], plugins: [this file])
"""

from harness import register_pattern
from harness.patterns import Microbatch


@register_pattern
class MeanOfMeans(Microbatch):
    """k equal micro-batches, each loss scaled by 1/k (a mean of micro-batch means)."""

    name = "mean_of_means"
    order = 25

    def step(self, s, batches):
        s.clear()
        for batch, _weight in batches:  # the harness's weight, items_i / items, set aside as the loop does
            s.accumulate(batch, 1 / self.k)
