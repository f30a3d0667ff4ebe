"""Wire format v2: two-layer frames, context-coded payloads, layer-aware reassembly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from link.coding2 import ContextModels
from link.errors import LinkError, MalformedPacket, PriorMismatch
from link.frame import FRAME_DELTA, Frame
from link.header2 import LAYER_COARSE, LAYER_FINE, parse_header2
from link.packet import open_fragment, pack, wire_size
from link.packet2 import open_fragment2, pack2, plan2, plan_layer, wire_size2
from link.reassembly import Reassembler, assemble
from link.security import KeyStore, Opener, Sealer
from link.tokenizers import get_tokenizer

SPEC = get_tokenizer(3)
KEY = bytes(range(16))


def synthetic_models(set_id: int = 9) -> ContextModels:
    """A deterministic context-model set: smooth coarse tables, a skewed index table."""
    coarse = []
    for n in SPEC.coarse_levels:
        t = np.ones(((n + 1) ** 2, n))
        for up in range(n + 1):
            for left in range(n + 1):
                for v in range(n):
                    d = sum(abs(v - x) for x in (up, left) if x < n)
                    t[up * (n + 1) + left, v] = 2.0 ** -d
        coarse.append(t)
    k = SPEC.codebook_size
    clusters = np.arange(k) % 8
    index = np.ones((9, k))
    for c in range(8):
        index[c, clusters == c] = 20.0
    index[8] = 1.0 + (np.arange(k) % 3)
    return ContextModels.from_arrays(SPEC, set_id, coarse, index, clusters)


MODELS = synthetic_models()


def make_frame(gh: int = 9, gw: int = 13, keep: float = 0.3, seed: int = 0, **kw) -> Frame:
    rng = np.random.default_rng(seed)
    ch, cw = SPEC.coarse_grid(gh, gw)
    base = rng.integers(0, 3, size=(4, 1, 1))
    coarse = np.clip(base + rng.integers(0, 2, size=(4, ch, cw)), 0, np.array(SPEC.coarse_levels)[:, None, None] - 1)
    kept = rng.random((gh, gw)) < keep
    indices = rng.integers(0, 1024, size=int(kept.sum()))
    args = dict(device_id=7, counter=9, capture_ms=1_700_000_000_000, width=gw * 8 - 3, height=gh * 8 - 5,
                tokenizer_id=3, grid_h=gh, grid_w=gw, kept=kept, indices=indices, coarse=coarse)
    args.update(kw)
    return Frame(**args)


def opener() -> Opener:
    return Opener(KeyStore({7: KEY}), tag_len=8)


def models_map() -> dict[int, ContextModels]:
    return {3: MODELS}


def test_round_trip_sealed_and_size_exact():
    f = make_frame(gh=30, gw=40, keep=0.25)
    frags = pack2(f, mtu=120, sealer=Sealer(KEY, 7), models=MODELS)
    assert sum(map(len, frags)) == wire_size2(f, mtu=120, tag_len=8, models=MODELS)
    assert all(len(x) <= 120 for x in frags) and len(frags) > 3
    decoded = [open_fragment2(x, opener(), models=models_map()) for x in frags]
    assert decoded[0].layer == LAYER_COARSE and decoded[-1].layer == LAYER_FINE  # coarse first
    got = assemble(decoded)
    assert got.complete and got.to_frame() == f


def test_range_coding_beats_raw_on_structured_frames():
    f = make_frame(gh=30, gw=40, keep=0.25)
    plans = plan2(f, mtu=1000, tag_len=8, models=MODELS)
    assert any(p.coding == MODELS.set_id for p in plans)
    raw = [p for layer in (LAYER_COARSE, LAYER_FINE) for p in plan_layer(f, layer, mtu=1000, tag_len=8, models=None)]
    assert all(p.coding == 0 for p in raw)
    assert sum(p.size for p in plans) < sum(p.size for p in raw)


def test_unsealed_default_dispatch_through_link_packet():
    f = make_frame()
    frags = pack2(f, mtu=60, sealer=None, models=MODELS)
    got = assemble([open_fragment2(x, None, models=models_map()) for x in frags])
    assert got.to_frame() == f
    # link.packet dispatches v2 bytes to packet2 (raw-coded frames need no context models)
    raw_frags = pack2(f, mtu=60, sealer=None, models=None)
    assert assemble([open_fragment(x) for x in raw_frags]).to_frame() == f
    assert sum(map(len, raw_frags)) == wire_size2(f, mtu=60, tag_len=0, models=None)


def test_lost_coarse_and_fine_fragments_still_give_a_frame():
    f = make_frame(gh=30, gw=40, keep=0.3)
    frags = pack2(f, mtu=60, sealer=None, models=MODELS)
    decoded = [open_fragment2(x, None, models=models_map()) for x in frags]
    coarse = [d for d in decoded if d.layer == LAYER_COARSE]
    fine = [d for d in decoded if d.layer == LAYER_FINE]
    assert len(coarse) >= 2 and len(fine) >= 2
    got = assemble(coarse[1:] + fine[:1] + fine[2:])
    assert not got.complete and got.capture_ms is None  # the info rode on the first coarse fragment
    h = coarse[0].header
    lost_cells = got.coarse_lost.ravel()
    assert lost_cells[h.slice_start : h.slice_end].all() and lost_cells.sum() == h.slice_len
    hf = fine[1].header
    assert got.lost.ravel()[hf.slice_start : hf.slice_end].all() and got.lost.sum() == hf.slice_len
    # what arrived is exact
    assert np.array_equal(got.coarse.reshape(4, -1)[:, ~lost_cells], f.coarse.reshape(4, -1)[:, ~lost_cells])
    ok = ~got.lost.ravel()
    assert np.array_equal(got.kept.ravel()[ok], f.kept.ravel()[ok])


def test_reassembler_completes_only_with_both_layers_and_drops_duplicates():
    f = make_frame(gh=20, gw=20)
    frags = pack2(f, mtu=80, sealer=Sealer(KEY, 7), models=MODELS)
    r = Reassembler(opener())
    r.priors = {}
    import link.packet2 as p2

    p2.default_models.cache_clear()
    orig = p2.default_models
    p2.default_models = lambda tid: MODELS  # type: ignore[assignment]
    try:
        out = []
        for i, x in enumerate(frags):
            out += r.feed(x, now=float(i))
            if i == 0:
                assert r.feed(x, now=0.5) == []  # a coarse fragment sent twice counts once
        assert len(out) == 1 and out[0].complete and out[0].to_frame() == f
        assert r.stats.duplicates == 1
    finally:
        p2.default_models = orig  # type: ignore[assignment]


def test_delta_frame_header_and_nonce_separation():
    f = make_frame(frame_type=FRAME_DELTA, ref_counter=4, coarse=None)
    frags = pack2(f, mtu=200, sealer=Sealer(KEY, 7), models=MODELS)
    h = parse_header2(frags[0])
    assert h.frame_type == FRAME_DELTA and h.ref_counter == 4 and h.layer == LAYER_FINE and h.info
    got = assemble([open_fragment2(x, opener(), models=models_map()) for x in frags])
    assert got.frame_type == FRAME_DELTA and got.ref_counter == 4 and got.complete and got.coarse is None
    assert got.to_frame() == f
    with pytest.raises(LinkError):
        make_frame(frame_type=FRAME_DELTA, ref_counter=4)  # a delta frame never carries a coarse layer
    # a coarse fragment's bytes relabelled as fine fail authentication (the layer is in the nonce and AAD)
    key = make_frame()
    frags = pack2(key, mtu=200, sealer=Sealer(KEY, 7), models=MODELS)
    bad = bytearray(frags[0])
    bad[1] ^= 0x08
    with pytest.raises(LinkError):
        open_fragment2(bytes(bad), opener(), models=models_map())


def test_wrong_context_models_are_refused():
    f = make_frame(gh=20, gw=20)
    frags = pack2(f, mtu=200, sealer=None, models=MODELS)
    coded = [x for x in frags if parse_header2(x).coding == MODELS.set_id]
    assert coded
    with pytest.raises(PriorMismatch):
        open_fragment2(coded[0], None, models={})
    other = synthetic_models(set_id=1)
    with pytest.raises(PriorMismatch):
        open_fragment2(coded[0], None, models={3: other})


def test_truncated_and_trailing_payloads_are_malformed():
    f = make_frame(gh=20, gw=20)
    for x in pack2(f, mtu=200, sealer=None, models=MODELS):
        for cut in (x[:-1], x[:-4], x + b"\x00\x00\x00\x00"):
            with pytest.raises(MalformedPacket):
                open_fragment2(cut, None, models=models_map())


def test_frame_validation():
    with pytest.raises(LinkError):
        make_frame(coarse=np.zeros((4, 1, 1), dtype=np.int64))
    with pytest.raises(LinkError):
        make_frame(frame_type=FRAME_DELTA)  # no reference
    with pytest.raises(LinkError):
        Frame(1, 1, 0, 8, 8, 1, 1, 1, np.ones((1, 1), bool), np.array([3]), coarse=np.zeros((4, 1, 1), np.int64))


# Golden bytes: fine grid 2x4, coarse grid 1x2, unsealed, raw coding.
GOLDEN_COARSE = bytes.fromhex("02" "18" "01020304" "00000005" "03" "02" "04" "0000" "02" "00"
                              "018bcfe56800" "0020" "0010" "0076a0")
GOLDEN_FINE = bytes.fromhex("02" "00" "01020304" "00000005" "03" "02" "04" "0000" "08" "00"
                            "b10040" "2ffe00")


def golden_frame() -> Frame:
    kept = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], dtype=bool)
    return Frame(0x01020304, 5, 1_700_000_000_000, 32, 16, 3, 2, 4, kept, np.array([1, 2, 1023, 512]),
                 coarse=np.array([[[0, 6]], [[0, 4]], [[0, 4]], [[1, 4]]]))


def test_golden_bytes_raw():
    f = golden_frame()
    frags = pack2(f, mtu=255, sealer=None, models=None)
    assert frags == [GOLDEN_COARSE, GOLDEN_FINE]
    assert assemble([open_fragment(x) for x in frags]).to_frame() == f


def test_v1_still_packs_v1():
    kept = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], dtype=bool)
    f1 = Frame(0x01020304, 5, 1_700_000_000_000, 32, 16, 1, 2, 4, kept, np.array([1, 2, 1023, 512]))
    frags = pack(f1, mtu=255, sealer=None)
    assert frags[0][0] == 1 and wire_size(f1, mtu=255, tag_len=0) == sum(map(len, frags))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_fragments_raise_only_link_errors(data):
    seed = data.draw(st.integers(0, 50))
    f = make_frame(gh=data.draw(st.integers(1, 12)), gw=data.draw(st.integers(1, 12)), seed=seed)
    frags = pack2(f, mtu=data.draw(st.integers(48, 200)), sealer=None, models=MODELS)
    x = bytearray(data.draw(st.sampled_from(frags)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(x) - 1))
        x[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(x)))
    try:
        open_fragment2(bytes(x[:cut] if data.draw(st.booleans()) else x), None, models=models_map())
    except LinkError:
        pass


def test_block_means_ride_with_the_coarse_layer_and_correct_the_picture():
    from link import dc

    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(120, 40, size=(75, 100, 3)), 0, 255).astype(np.uint8)
    means = dc.block_means(img)
    assert means.shape == (3, 3, 4)
    f = make_frame(gh=10, gw=13, dc=means, width=100, height=75)
    for models in (MODELS, None):  # None: the shipped context-model set
        frags = pack2(f, mtu=60, sealer=Sealer(KEY, 7), models=models)
        assert sum(map(len, frags)) == wire_size2(f, mtu=60, tag_len=8, models=models)
        got = assemble([open_fragment2(x, opener(), models=models_map() if models else None) for x in frags])
        assert np.array_equal(got.dc, means) and not got.dc_lost.any() and got.to_frame() == f
    # a picture whose colours drifted comes back to the sent block means
    drifted = np.clip(img.astype(int) + np.array([30, -20, 10]), 0, 255).astype(np.uint8)
    fixed = dc.correct(drifted, means)
    err = lambda a: np.abs(dc.rgb_block_means(a) - dc.rgb_block_means(img)).mean()  # noqa: E731
    assert err(fixed) < err(drifted) / 3
    # lost means: no correction where nothing is known
    assert np.array_equal(dc.correct(drifted, means, np.zeros((3, 4), bool)), drifted)
    with pytest.raises(LinkError):
        make_frame(gh=10, gw=13, dc=means[:, :2])


def test_plan_cache_returns_exactly_what_a_fresh_planner_gives():
    """Plans are cached by content: a repeat is free, and any change in what the planner reads
    (one index, the kept map, the MTU, the frame type) gets its own plan."""
    from link.packet2 import LayerPlanner

    def fresh(f: Frame, layer: int, mtu: int) -> list:
        if layer == LAYER_COARSE and f.coarse is None:
            return []
        info = layer == LAYER_COARSE or f.coarse is None
        return LayerPlanner(f, layer, mtu=mtu, tag_len=8, models=MODELS, info_here=info).plan()

    base = make_frame(gh=18, gw=26, keep=0.5, seed=3)
    idx = base.indices.copy()
    idx[0] = (idx[0] + 1) % SPEC.codebook_size
    variants = [base, make_frame(gh=18, gw=26, keep=0.5, seed=3),
                Frame(**{**base.__dict__, "indices": idx}),
                Frame(**{**base.__dict__, "frame_type": FRAME_DELTA, "ref_counter": 1, "coarse": None, "dc": None})]
    for f in variants:
        for layer in (LAYER_COARSE, LAYER_FINE):
            for mtu in (64, 222):
                assert plan_layer(f, layer, mtu=mtu, models=MODELS) == fresh(f, layer, mtu)
                assert plan_layer(f, layer, mtu=mtu, models=MODELS) == fresh(f, layer, mtu)  # cached
    changed = plan_layer(variants[2], LAYER_FINE, mtu=64, models=MODELS)
    assert changed != plan_layer(base, LAYER_FINE, mtu=64, models=MODELS)
