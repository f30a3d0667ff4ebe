"""Which tokens to send: fuse semantic and recoverability scores into one order, cut it at the budget.

The order has three tiers:
  1. semantic tokens, highest semantic score first (when objects alone would fill the budget,
     ``context_reserve`` of it is held back for tier 2 and the rest of the objects follow it);
  2. a dispersal lattice: the grid is cut into s x s cells (s chosen from the budget) and each cell
     without a kept token keeps its least recoverable token, so every masked token has kept
     context within Chebyshev distance s - 1 and no large hole opens outside objects -- a MaskGIT
     restorer guesses a token far better from neighbours than from nothing;
  3. the rest by keep priority, greedily, each kept token lowering its neighbours' priority so the
     extra tokens spread out instead of clumping on one textured patch.
The cut is exact: binary search over the prefix length with the injected cost function (the
link's ``wire_size`` in bytes, or the LoRa airtime of the planned fragments in seconds), then a
greedy top-up of later tokens that still fit. Pure numpy, deterministic:
ties go to the lower row-major position.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

TOPUP_DONE = 0.998  # stop trying later tokens once this close to the limit

# (kept mask (h, w) bool, kept indices row-major) -> packet cost: bytes, or seconds on air
SizeFn = Callable[[np.ndarray, np.ndarray], float]


class BudgetTooSmall(ValueError):
    """Even a frame with no tokens exceeds the budget.

    ``budget`` and ``empty_size`` are in the cost unit (bytes or seconds on air); ``for_budget``
    restates it in the user's own unit with the smallest budget that would work, because "the
    budget is too small" alone leaves the user guessing how much bigger it has to be."""

    def __init__(self, budget: float, empty_size: float, message: str | None = None) -> None:
        self.budget, self.empty_size = budget, empty_size
        super().__init__(message or f"budget of {budget:g} is below the cost of an empty frame ({empty_size:g})")

    @classmethod
    def for_budget(cls, budget: BudgetConfig, width: int, height: int, empty_size: float) -> BudgetTooSmall:
        """The same failure, naming the minimum ``budget.value`` for a ``width`` x ``height`` image."""
        if budget.unit != "seconds":  # a size estimate may be fractional (range coding); budgets are whole bytes
            empty_size = float(math.ceil(empty_size))
        minimum = empty_size * 8 / (width * height) if budget.unit == "bpp" else empty_size
        cost = f"{empty_size:.3g} s on air" if budget.unit == "seconds" else f"{empty_size:g} bytes"
        scale = 10.0 ** (2 - math.floor(math.log10(minimum))) if minimum > 0 else 1.0
        if budget.unit == "bytes":
            scale = 1.0
        shown = round(minimum * scale) / scale
        if shown < minimum:  # 3 digits (whole bytes), rounded up: the number shown is enough
            shown = (round(minimum * scale) + 1) / scale
        return cls(budget_limit(budget, width, height), empty_size,
                   f"budget {budget.value:g} {budget.unit} is below the minimum {shown:g} {budget.unit} "
                   f"for a {width}x{height} image (an empty frame costs {cost})")


@dataclass
class BudgetConfig:
    unit: Literal["bpp", "bytes", "seconds"] = "bytes"
    value: float = 1200.0

    def __post_init__(self) -> None:
        if not (self.value > 0 and math.isfinite(self.value)):
            raise ValueError(f"budget value must be a positive number, got {self.value}")


@dataclass
class SamplerConfig:
    lattice_share: float = 0.5  # share of the non-semantic tokens spent on the dispersal lattice
    context_reserve: float = 0.1  # share of the budget kept for the lattice when objects could fill it
    min_stride: int = 2
    max_stride: int = 16
    fixed_stride: int = 0  # > 0: always this lattice stride (max gap = stride - 1)
    neighbour_penalty: float = 0.5  # priority lost per kept 8-neighbour fraction
    topup_tries: int = 8  # later tokens tried after the cut (wire v1; wire v2 settles its cut exactly instead)

    def __post_init__(self) -> None:
        if not 0.0 < self.lattice_share <= 1.0:
            raise ValueError(f"lattice_share must be in (0, 1], got {self.lattice_share}")
        if not 1 <= self.min_stride <= self.max_stride:
            raise ValueError(f"need 1 <= min_stride <= max_stride, got {self.min_stride}, {self.max_stride}")
        if not 0.0 <= self.context_reserve < 1.0:
            raise ValueError(f"context_reserve must be in [0, 1), got {self.context_reserve}")
        if self.fixed_stride < 0 or not 0.0 <= self.neighbour_penalty <= 1.0 or self.topup_tries < 0:
            raise ValueError("fixed_stride >= 0, neighbour_penalty in [0, 1] and topup_tries >= 0 required")


@dataclass
class Sampled:
    kept: np.ndarray  # bool (h, w)
    cost: float  # size_fn of the kept set: bytes or seconds, <= limit
    limit: float
    n_semantic: int  # semantic tokens among the kept
    stride: int  # lattice stride used (0: no lattice)


def budget_limit(budget: BudgetConfig, width: int, height: int) -> float:
    """The limit on the packet cost: bytes for "bpp" and "bytes", seconds on air for "seconds"."""
    if budget.unit == "bpp":
        return float(int(budget.value * width * height / 8))
    if budget.unit == "bytes":
        return float(int(budget.value))
    return float(budget.value)


def _ranked(flat: np.ndarray, scores: list[np.ndarray]) -> np.ndarray:
    """``flat`` positions sorted by the score arrays, descending, ties to the lower position."""
    keys = [flat] + [-s[flat] for s in reversed(scores)]
    return flat[np.lexsort(keys)]


def choose_stride(n_free: int, n_slots: int, config: SamplerConfig, share: float | None = None) -> int:
    """Lattice stride putting about ``share`` of ``n_slots`` tokens on ``n_free`` background tokens."""
    if config.fixed_stride:
        return config.fixed_stride
    if n_slots <= 0 or n_free <= 0:
        return 0
    s = math.sqrt(n_free / ((share or config.lattice_share) * n_slots))
    return int(min(max(math.ceil(s), config.min_stride), config.max_stride))


def lattice(covering: np.ndarray, excluded: np.ndarray, priority: np.ndarray, stride: int) -> np.ndarray:
    """One token per stride x stride cell holding no ``covering`` token: its best non-excluded token.

    Returned coarse-to-fine (cells on a 4s, then 2s, then s lattice), priority within a level, so a
    slightly shorter prefix still spreads over the frame."""
    h, w = priority.shape
    ch, cw = -(-h // stride), -(-w // stride)
    rows, cols = np.divmod(np.arange(h * w), w)
    cell = (rows // stride) * cw + cols // stride
    covered = np.zeros(ch * cw, bool)
    covered[cell[covering.ravel()]] = True
    free = np.flatnonzero(~excluded.ravel() & ~covered[cell])
    if free.size == 0:
        return free
    # best free token per cell: sort by (cell, -priority, position), take each cell's first
    pr = priority.ravel()
    o = free[np.lexsort((free, -pr[free], cell[free]))]
    first = np.ones(o.size, bool)
    first[1:] = cell[o[1:]] != cell[o[:-1]]
    picks = o[first]
    cr, cc = np.divmod(cell[picks], cw)
    level = np.where((cr % 4 == 0) & (cc % 4 == 0), 0, np.where((cr % 2 == 0) & (cc % 2 == 0), 1, 2))
    return picks[np.lexsort((picks, -pr[picks], level))]


def spread_rest(taken: np.ndarray, priority: np.ndarray, count: int, penalty: float) -> np.ndarray:
    """``count`` more tokens greedily by priority x (1 - penalty x kept-neighbour share), then the rest."""
    h, w = priority.shape
    pr = priority.ravel().astype(np.float64)
    kept = taken.ravel().copy()
    k = np.pad(taken, 1).astype(np.int32)
    nbrs = sum(k[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) - taken
    eff = pr * (1.0 - penalty * np.asarray(nbrs, np.float64).ravel() / 8.0)
    heap = [(-eff[i], int(i)) for i in np.flatnonzero(~kept)]
    heapq.heapify(heap)
    out: list[int] = []
    while heap and len(out) < count:
        neg, i = heapq.heappop(heap)
        if kept[i] or -neg != eff[i]:
            continue  # stale entry: a neighbour was kept since it was pushed
        kept[i] = True
        out.append(i)
        if penalty > 0:
            r, c = divmod(i, w)
            for j in (
                rr * w + cc
                for rr in range(max(r - 1, 0), min(r + 2, h))
                for cc in range(max(c - 1, 0), min(c + 2, w))
            ):
                if not kept[j]:
                    eff[j] -= pr[j] * penalty / 8.0
                    heapq.heappush(heap, (-eff[j], j))
    rest = np.flatnonzero(~kept)
    return np.concatenate([np.asarray(out, np.int64), _ranked(rest, [pr])])


def keep_order(
    semantic: np.ndarray, priority: np.ndarray, capacity: int, config: SamplerConfig | None = None
) -> tuple[np.ndarray, int, int]:
    """All token positions (row-major flat) in keep order; also (number semantic, lattice stride)."""
    config = config or SamplerConfig()
    n = semantic.size
    flat = np.arange(n)
    sem_pos = _ranked(flat[semantic.ravel() > 0], [semantic.ravel(), priority.ravel()])
    # Objects may fill the budget; a small reserve still buys the background a sparse lattice so the
    # restorer is not left to invent the whole scene around them.
    reserve = math.ceil(config.context_reserve * capacity)
    n_first = min(sem_pos.size, max(capacity - reserve, 0)) if sem_pos.size + reserve > capacity else sem_pos.size
    sem_first, sem_rest = sem_pos[:n_first], sem_pos[n_first:]
    taken = np.zeros(n, bool)
    taken[sem_pos] = True
    slots = max(capacity - n_first, 0)
    # objects overflowing: the whole reserve goes to the lattice
    stride = choose_stride(n - sem_pos.size, slots, config, 1.0 if sem_rest.size else None)
    shape = semantic.shape
    lat = np.zeros(0, np.int64)
    if stride:  # cells are covered only by semantic tokens that come before the lattice
        lat = lattice(_taken(sem_first, shape), taken.reshape(shape), priority, stride)
        if sem_rest.size:
            lat = lat[: max(slots, 0)]
    taken[lat] = True
    room = max(slots - lat.size - sem_rest.size, 0) + config.topup_tries
    rest = spread_rest(taken.reshape(shape), priority, room, config.neighbour_penalty)
    return np.concatenate([sem_first, lat, sem_rest, rest]).astype(np.int64), int(sem_pos.size), stride


def _taken(pos: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    m = np.zeros(int(np.prod(shape)), bool)
    m[pos] = True
    return m.reshape(shape)


def _prefix_fit(
    order: np.ndarray, tokens: np.ndarray, size_fn: SizeFn, limit: float, hint: int | None = None
) -> tuple[int, float]:
    """Largest k with size(first k of order) <= limit; returns (k, size).

    Bisection over [0, n], or, given a ``hint`` near the answer, a gallop out from it first, so the
    second cut (same budget, a reordered prefix) costs a handful of size calls instead of ~13."""

    def size(k: int) -> float:
        m = _taken(order[:k], tokens.shape)
        return size_fn(m, tokens[m])

    n = order.size
    lo, lo_size = 0, size(0)
    if lo_size > limit:
        raise BudgetTooSmall(limit, lo_size)
    hi = n + 1  # sentinel: "does not fit", never evaluated
    if hint is not None and 0 < hint <= n:
        step, probe = 1, hint
        if (s := size(probe)) <= limit:
            lo, lo_size = probe, s
            while lo < n:  # gallop up
                probe = min(lo + step, n)
                if (s := size(probe)) > limit:
                    hi = probe
                    break
                lo, lo_size, step = probe, s, step * 2
        else:
            hi = probe
            while hi > 1:  # gallop down
                probe = max(hi - step, 1)
                if (s := size(probe)) <= limit:
                    lo, lo_size = probe, s
                    break
                hi, step = probe, step * 2
    elif (full := size(n)) <= limit:
        return n, full
    if lo == n:
        return lo, lo_size
    while hi - lo > 1:
        mid = (lo + hi) // 2
        s = size(mid)
        if s <= limit:
            lo, lo_size = mid, s
        else:
            hi = mid
    return lo, lo_size


def _settle_exact(order: np.ndarray, tokens: np.ndarray, size_fn: SizeFn, estimate: SizeFn, limit: float,
                  k: int) -> tuple[int, float]:
    """From the estimate's cut ``k``, the exact cut: step down by the overshoot until the exact size
    fits, then one step up by the room left. A handful of exact calls instead of a bisection."""

    def size(fn: SizeFn, j: int) -> float:
        m = _taken(order[:j], tokens.shape)
        return fn(m, tokens[m])

    base = size(size_fn, 0)
    if base > limit:
        raise BudgetTooSmall(limit, base)
    per = max((size(estimate, k) - size(estimate, 0)) / k, 1e-9) if k else 1.0
    s = size(size_fn, k)
    while s > limit and k > 0:
        k = max(0, k - max(1, int(math.ceil((s - limit) / per))))
        s = size(size_fn, k)
    grow = int((limit - s) / per)
    if grow > 0 and k < order.size:
        j = min(order.size, k + grow)
        sj = size(size_fn, j)
        if sj <= limit:
            k, s = j, sj
    return k, s


def estimate_capacity(order: np.ndarray, tokens: np.ndarray, size_fn: SizeFn, limit: float) -> int:
    """About how many tokens of ``order`` fit: two secant steps on the (near-linear) cost curve.

    Only sizes the lattice and the greedy tier, so three size calls beat an exact search here."""

    def size(k: int) -> float:
        m = _taken(order[:k], tokens.shape)
        return size_fn(m, tokens[m])

    n = order.size
    base = size(0)
    if base > limit:
        raise BudgetTooSmall(limit, base)
    k = max(n // 4, 1)
    for _ in range(2):
        per_token = (size(k) - base) / k
        if per_token <= 0:
            return n
        k = int(np.clip((limit - base) / per_token, 1, n))
    return k


def sample(
    semantic: np.ndarray,
    priority: np.ndarray,
    tokens: np.ndarray,
    size_fn: SizeFn,
    limit: float,
    config: SamplerConfig | None = None,
) -> Sampled:
    """Keep mask whose ``size_fn`` cost is at most ``limit`` (never above), as close as it gets."""
    config = config or SamplerConfig()
    if not semantic.shape == priority.shape == tokens.shape or semantic.ndim != 2:
        raise ValueError(
            f"semantic {semantic.shape}, priority {priority.shape} and tokens {tokens.shape} must be one 2-D grid"
        )
    # A size function may carry a cheap ``estimate`` (wire v2: range-coded sizes need an encode
    # per fragment); the search then runs on the estimate and only the cut is settled exactly.
    estimate: SizeFn | None = getattr(size_fn, "estimate", None)
    search_fn = estimate or size_fn
    # Capacity first, on a plain order: the cost depends mostly on the count kept.
    rough = _ranked(np.arange(semantic.size), [semantic.ravel(), priority.ravel()])
    capacity = estimate_capacity(rough, tokens, search_fn, limit)
    order, n_sem, stride = keep_order(semantic, priority, capacity, config)
    k, size = _prefix_fit(order, tokens, search_fn, limit, hint=capacity)
    tries = config.topup_tries
    if estimate is not None:
        k, size = _settle_exact(order, tokens, size_fn, estimate, limit, k)
        # each try is a whole exact plan (a few ms at 768x512) and they won 6 tokens in 8,425 on
        # coco128 once the planner filled its fragments: none on this path
        tries = 0
    kept = _taken(order[:k], tokens.shape)
    for pos in order[k + 1 : k + 1 + tries]:
        if size >= TOPUP_DONE * limit:
            break
        kept.flat[pos] = True
        s = size_fn(kept, tokens[kept])
        if s <= limit:
            size = s
        else:
            kept.flat[pos] = False
    n_semantic = int(np.count_nonzero(kept & (semantic > 0)))
    return Sampled(kept, float(size), float(limit), n_semantic, stride)
