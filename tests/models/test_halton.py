import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.halton import halton_order, masked_halton_order, radical_inverse, reveal_counts


def test_radical_inverse_known_values():
    assert radical_inverse(1, 2) == 0.5
    assert radical_inverse(3, 2) == 0.75
    assert radical_inverse(1, 3) == pytest.approx(1 / 3)
    assert radical_inverse(4, 3) == pytest.approx(1 / 3 + 1 / 9)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (16, 16), (64, 96), (7, 1)])
def test_halton_order_is_a_permutation(h, w):
    order = halton_order(h, w)
    assert sorted(order.tolist()) == list(range(h * w))


def test_halton_order_spreads_the_first_cells():
    order = halton_order(16, 16)
    ys, xs = np.divmod(order[:16], 16)
    # The first 16 cells fall one in each 4x4 block: a well-dispersed start.
    blocks = set(zip((ys // 4).tolist(), (xs // 4).tolist()))
    assert len(blocks) >= 14


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_masked_order_covers_every_masked_cell_once(h, w, seed):
    unknown = np.random.default_rng(seed).random((h, w)) < 0.5
    order = masked_halton_order(unknown)
    assert sorted(order.tolist()) == sorted(np.flatnonzero(unknown).tolist())


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 5000), st.integers(1, 32))
def test_reveal_counts_sum_and_positive(n, steps):
    counts = reveal_counts(n, steps)
    assert sum(counts) == n
    assert all(c > 0 for c in counts)
    assert len(counts) <= steps
