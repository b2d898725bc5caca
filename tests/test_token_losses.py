"""Token losses: a mean over the valid targets, not over rows (Problem.items). Correct gradients
agree under every pattern, an empty micro-batch adding nothing; a loss that does not say what it
is a mean over is named as such, never as a wrong formula; and the field's token-loss bugs are
each caught with words that name them, and pass where they cannot show."""

import re

import pytest
import torch

import harness
from harness import Cell, register_pattern, run_family
from harness.patterns import Uneven
from harness.plugins import load_plugin
from harness.problems.softmax import IGNORE_INDEX, Softmax
from helpers import NO_TIMING, PLUGINS, ROOT

load_plugin(ROOT / "experiments" / "plugins" / "masked_squares.py")
for plugin in ("counts_ignored", "one_grad_output", "chunk_labels", "chunk_nan"):
    load_plugin(PLUGINS / f"token_{plugin}.py")
load_plugin(ROOT / "experiments" / "plugins" / "mean_of_means.py")
load_plugin(PLUGINS / "function_sum_for_mean.py")

DTYPES = ["float64", "float32", "bfloat16", "float16"]
PATTERNS = ["full", "zero", "microbatch:4", "uneven:3", "nozero:2"]
SPLIT = ["microbatch:4", "uneven:3"]
N = 1000  # masked_squares: rows 700 to 1000 are padding; microbatch:4's last micro-batch, 750 to 1000
SOFTMAX = {"n": N, "d": 5, "c": 7}


def run(problem, methods, pattern="full", dtype="float32", **sizes):
    cells = [Cell(problem, m, pattern=pattern, dtype=dtype, seed=3, **sizes) for m in methods]
    return run_family([c for c in cells if c.skip_reason() is None], timing=NO_TIMING)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_masked_mean_with_items_agrees_in_every_pattern_with_no_nan(dtype):
    for pattern in PATTERNS:
        for r in run("masked_squares", ["manual", "autograd", "func"], pattern, dtype, n=N, d=5):
            assert r["status"] == "ok", (pattern, r["method"], r["rel_err"], r["diagnosis"])
            assert r["items"] == 700
    (r,) = run("masked_squares", ["manual"], "microbatch:4", dtype, n=N, d=5)
    assert r["batch_items"] == [250, 250, 200, 0]  # the last micro-batch is padding alone, left out


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_the_same_loss_without_items_is_named_under_split_patterns_never_the_formula(dtype):
    for pattern in ["full", "zero", "nozero:2"]:  # the whole batch: every weighting is the same
        for r in run("masked_squares_rows", ["manual", "autograd"], pattern, dtype, n=N, d=5):
            assert r["status"] == "ok", (pattern, r["method"], r["diagnosis"])
    for pattern in SPLIT:
        for r in run("masked_squares_rows", ["manual", "autograd", "func"], pattern, dtype, n=N, d=5):
            assert r["status"] == "mismatch", (pattern, r["method"])
            assert "items(data)" in r["diagnosis"] and "formula" not in r["diagnosis"], r["diagnosis"]
            assert "not a mean over rows" in r["diagnosis"]
    (r,) = run("masked_squares_rows", ["autograd"], "microbatch:4", dtype, n=N, d=5)
    # the last micro-batch holds no valid row: its own mean is 0/0, NaN in float64 too
    assert r["diagnosis"].startswith(
        "non-finite gradient under microbatch:4: the micro-batch of rows 750 to 1000"
    )


def test_padded_labels_are_ignore_index_on_the_last_quarter_and_a_tenth_of_the_rest():
    _, data = Softmax(n=4000, d=3, c=5, data="padded").make(torch.Generator().manual_seed(0))
    ignored = data["y"] == IGNORE_INDEX
    assert ignored[3000:].all()
    assert 0.07 < ignored[:3000].float().mean() < 0.13
    _, plain = Softmax(n=4000, d=3, c=5).make(torch.Generator().manual_seed(0))
    assert (data["y"][~ignored] == plain["y"][~ignored]).all()  # the same draw, padding added


# -- the field's token-loss bugs, each caught, each right where it cannot show ----------------


def flagged(problem, pattern="full", data="padded", method="function", **sizes):
    (r,) = run(problem, [method], pattern, data=data, **(sizes or SOFTMAX))
    assert r["status"] == "mismatch", r
    return r["diagnosis"]


def passes(problem, pattern="full", data="random", method="function", **sizes):
    (r,) = run(problem, [method], pattern, data=data, **(sizes or SOFTMAX))
    assert r["status"] == "ok", (r["rel_err"], r["diagnosis"])


def test_a_mean_that_counts_the_ignored_targets():
    text = flagged("tok_counts_ignored")
    assert text.startswith("the forward is wrong: its loss is 0.")
    assert "a mean over all n=1000 rows where the loss is a mean over its" in text
    assert "a mean over all n=1000 rows" in flagged("tok_counts_ignored", "microbatch:4")
    for pattern in ["full", "microbatch:4"]:
        passes("tok_counts_ignored", pattern)  # no padding: every row is a target


def test_a_backward_that_reads_one_grad_output_for_every_row():
    text = flagged("tok_one_grad_output", data="weighted")
    assert text.startswith("the gradient is the unweighted loss's")
    assert "reads one grad_output for every row" in text
    flagged("tok_one_grad_output", "uneven:3", data="weighted")  # flagged in a split step too
    for pattern in ["full", "uneven:3"]:
        passes("tok_one_grad_output", pattern, data="uniform")  # every weight 1: grad_output the same


def test_a_chunked_function_that_slices_its_chunks_labels_wrongly():
    text = flagged("tok_chunk_labels")
    assert "right on its first 16 rows alone: the error enters past them" in text
    assert "labels or mask sliced wrongly" in text
    passes("tok_chunk_labels", data="padded", n=200, d=5, c=7)  # one chunk: nothing to slice


def test_a_function_that_returns_nan_for_a_chunk_without_targets():
    for pattern in ["full", "uneven:3"]:
        text = flagged("tok_chunk_nan", pattern)
        assert "non-finite loss (nan): a mean over a chunk or micro-batch with no items" in text
    for pattern in ["full", "uneven:3"]:
        passes("tok_chunk_nan", pattern)  # every chunk holds targets


def test_an_accumulation_loop_weighting_micro_batches_by_1_over_k():
    for method in ["manual", "autograd", "function"]:
        text = flagged("softmax", "mean_of_means:4", method=method)
        assert text.startswith("micro-batches weighted by 1/k (a mean of micro-batch means) where the loss")
        assert "weight each by its items" in text and "formula" not in text
        passes("softmax", "mean_of_means:4", method=method)  # every micro-batch holds as many targets


@register_pattern
class RowsLoop(Uneven):
    """An accumulation loop that weights each micro-batch by its rows, n_i/N."""

    name = "rows_loop"

    def step(self, s, batches):
        s.clear()
        rows = s.problem.rows(s.data)
        for batch, _weight in batches:
            s.accumulate(batch, s.problem.rows(batch) / rows)


def test_an_accumulation_loop_weighting_micro_batches_by_their_rows():
    text = flagged("softmax", "rows_loop:3", method="autograd")
    assert text.startswith("micro-batches weighted by their rows (n_i/N) where the loss is a mean over items")
    passes("softmax", "rows_loop:3", method="autograd")  # every row a target: rows are the items


def test_a_sum_over_each_micro_batch_names_its_rows():
    # the Function of fn_sum_for_mean sums r^2 where its mean was meant: n times under full, and
    # under microbatch:4 each micro-batch's sum is its rows' count times its mean
    (r,) = run("fn_sum_for_mean", ["function"], "microbatch:4", n=N, d=3)
    assert "a sum where a mean over the 250 rows of each micro-batch was meant" in r["diagnosis"]


def test_the_page_shows_the_shipped_plugins_and_says_what_the_harness_says():
    page = (ROOT / "docs" / "token-losses.md").read_text()
    python = re.findall(r"^```python\n(.*?)^```", page, flags=re.S | re.M)
    assert python[0] == (ROOT / "experiments" / "plugins" / "masked_squares.py").read_text()
    assert python[-1] == (ROOT / "experiments" / "plugins" / "mean_of_means.py").read_text()
    said = " ".join(page.split())
    cases = [
        ("masked_squares_rows", "random", "uneven:3", "autograd"),
        ("masked_squares_rows", "random", "microbatch:4", "autograd"),
        ("softmax", "padded", "mean_of_means:4", "autograd"),
        ("tok_counts_ignored", "padded", "full", "function"),
        ("tok_chunk_nan", "padded", "full", "function"),
        ("tok_one_grad_output", "weighted", "full", "function"),
    ]
    for problem, data, pattern, method in cases:
        sizes = {"n": N, "d": 5} if problem.startswith("masked") else {**SOFTMAX, "data": data}
        result = harness.check(
            problem, patterns=[pattern], methods=[method], dtypes=["float32"], devices=["cpu"], **sizes
        )
        (line,) = result.lines()
        quoted = line if problem.startswith(("masked", "softmax")) else line.split("): ", 1)[1]
        assert " ".join(quoted.split()) in said, line
