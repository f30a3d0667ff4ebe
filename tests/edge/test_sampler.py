"""Sampler: exact budget cut, determinism, tier order, dispersal guarantee, budget units."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edge.sampler import (
    BudgetConfig,
    BudgetTooSmall,
    SamplerConfig,
    budget_limit,
    choose_stride,
    keep_order,
    lattice,
    sample,
)
from link.config import ConfigError, from_dict

H, W = 64, 96


def fixed_size(kept: np.ndarray, indices: np.ndarray) -> int:
    """16-byte header + raw kept map + 10-bit indices, like an uncompressed packet."""
    return 16 + math.ceil((kept.size + 10 * indices.size) / 8)


def runs_size(kept: np.ndarray, indices: np.ndarray) -> int:
    """Content-dependent size: a run-length kept map (8 bits per run) + 10-bit indices."""
    flat = kept.ravel()
    runs = 1 + int(np.count_nonzero(flat[1:] != flat[:-1]))
    return 16 + math.ceil((8 * runs + 10 * indices.size) / 8)


def scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    semantic = np.zeros((H, W), np.float32)
    semantic[10:20, 30:40] = 0.9  # a car
    semantic[40:44, 70:72] = 1.0  # a small person
    priority = rng.random((H, W)).astype(np.float32)
    tokens = rng.integers(0, 1024, (H, W))
    return semantic, priority, tokens


@pytest.mark.parametrize("size_fn", [fixed_size, runs_size])
@pytest.mark.parametrize("limit", [1000, 2500, 6000])
def test_never_over_budget_and_within_two_percent(size_fn, limit):
    semantic, priority, tokens = scores()
    out = sample(semantic, priority, tokens, size_fn, limit)
    assert out.cost == size_fn(out.kept, tokens[out.kept]) <= limit
    assert out.cost >= 0.98 * limit


def test_real_link_wire_size_is_respected():
    packet = pytest.importorskip("link.packet")
    from link.frame import Frame

    semantic, priority, tokens = scores()

    def wire(kept, indices):
        return packet.wire_size(Frame(1, 1, 1, 768, 512, 1, H, W, kept, indices), mtu=222, tag_len=8)

    for limit in (600, 3000):
        out = sample(semantic, priority, tokens, wire, limit)
        assert 0.98 * limit <= out.cost <= limit


def test_semantic_tokens_go_first_highest_score_first():
    semantic, priority, tokens = scores()
    order, n_sem, _ = keep_order(semantic, priority, capacity=400)
    assert n_sem == 108
    first = semantic.ravel()[order[:n_sem]]
    assert (first > 0).all() and (np.diff(first) <= 0).all()
    assert (semantic.ravel()[order[:8]] == 1.0).all()
    out = sample(semantic, priority, tokens, fixed_size, 1000)
    assert out.kept[semantic > 0].all() and out.n_semantic == 108


def test_deterministic_with_ties():
    semantic = np.zeros((H, W), np.float32)
    priority = np.full((H, W), 0.5, np.float32)  # every token ties
    tokens = np.zeros((H, W), np.int64)
    a = sample(semantic, priority, tokens, fixed_size, 1500)
    b = sample(semantic.copy(), priority.copy(), tokens.copy(), fixed_size, 1500)
    assert np.array_equal(a.kept, b.kept)


def chebyshev_gap(kept: np.ndarray) -> int:
    """Largest Chebyshev distance from any token to the nearest kept one."""
    return int(cv2.distanceTransform((~kept).astype(np.uint8), cv2.DIST_C, 3).max())


@pytest.mark.parametrize("limit", [1000, 1500, 4000])
def test_every_masked_token_has_kept_context_nearby(limit):
    semantic, _, tokens = scores()
    priority = np.zeros((H, W), np.float32)
    priority[:, :20] = 1.0  # all the 'difficulty' in one strip: a plain top-k would leave holes
    out = sample(semantic, priority, tokens, fixed_size, limit)
    assert out.stride >= 2
    assert chebyshev_gap(out.kept) <= out.stride - 1
    assert out.kept[:, 20:].sum() >= (H // out.stride) * ((W - 20) // out.stride) - 8


def test_lattice_covers_each_free_cell_once_and_coarse_first():
    covering = np.zeros((8, 8), bool)
    covering[0, 0] = True
    pr = np.arange(64, dtype=np.float32).reshape(8, 8)
    picks = lattice(covering, covering, pr, 4)
    assert sorted(picks.tolist()) == [31, 59, 63]  # best token of the three uncovered 4x4 cells
    assert choose_stride(6000, 0, SamplerConfig()) == 0
    assert choose_stride(6000, 200, SamplerConfig()) == 8
    assert choose_stride(6000, 200, SamplerConfig(fixed_stride=3)) == 3


def test_neighbour_penalty_spreads_extra_tokens():
    semantic = np.zeros((H, W), np.float32)
    priority = np.ones((H, W), np.float32)
    priority[30:34, 40:44] = 1.0
    tokens = np.zeros((H, W), np.int64)
    out = sample(semantic, priority, tokens, fixed_size, 16 + math.ceil((H * W + 10 * 1500) / 8),
                 SamplerConfig(fixed_stride=16))
    kept = out.kept.astype(int)
    pairs = (kept[:, 1:] & kept[:, :-1]).sum() + (kept[1:] & kept[:-1]).sum()
    assert pairs < 0.2 * kept.sum()  # mostly isolated tokens, not blobs


def test_budget_too_small_and_shape_errors():
    semantic, priority, tokens = scores()
    with pytest.raises(BudgetTooSmall, match="empty frame"):
        sample(semantic, priority, tokens, fixed_size, 100)
    with pytest.raises(ValueError, match="one 2-D grid"):
        sample(semantic, priority[:-1], tokens, fixed_size, 1000)


def test_budget_units_and_config():
    assert budget_limit(BudgetConfig("bytes", 1200.7), 768, 512) == 1200
    assert budget_limit(BudgetConfig("bpp", 0.05), 768, 512) == 2457
    assert budget_limit(BudgetConfig("seconds", 30.0), 768, 512) == 30.0
    cfg = from_dict(BudgetConfig, {"unit": "seconds", "value": 12})
    assert cfg.value == 12.0
    with pytest.raises(ConfigError, match="unit"):
        from_dict(BudgetConfig, {"unit": "kbps", "value": 1})
    with pytest.raises(ConfigError, match="positive"):
        from_dict(BudgetConfig, {"value": 0})
    with pytest.raises(ConfigError, match="lattice_share"):
        from_dict(SamplerConfig, {"lattice_share": 0})


@pytest.mark.parametrize("hint", [None, 1, 37, 120, 500])
def test_prefix_fit_matches_brute_force_with_any_hint(hint):
    from edge.sampler import _prefix_fit

    order = np.arange(400)
    tokens = np.zeros((20, 20), np.int64)
    for limit in (0, 1, 55, 399, 400, 1000):
        k, size = _prefix_fit(order, tokens, lambda m, i: i.size, limit, hint=hint)
        assert k == min(limit, 400) and size == k


def test_context_reserve_keeps_a_background_lattice_when_objects_fill_the_budget():
    semantic = np.zeros((H, W), np.float32)
    semantic[:, : W // 2] = 0.8  # a lorry filling half the frame
    priority = np.random.default_rng(1).random((H, W)).astype(np.float32)
    tokens = np.zeros((H, W), np.int64)
    limit = fixed_size(np.zeros((H, W), bool), np.zeros(1000, np.int64))
    out = sample(semantic, priority, tokens, fixed_size, limit)
    background = out.kept[:, W // 2 :]
    assert out.kept.sum() == 1000 and 80 <= background.sum() <= 110  # ~10 % of the budget
    assert chebyshev_gap(np.c_[np.ones((H, W // 2), bool), background]) <= out.stride - 1
    none = sample(semantic, priority, tokens, fixed_size, limit, SamplerConfig(context_reserve=0.0))
    assert not none.kept[:, W // 2 :].any()
