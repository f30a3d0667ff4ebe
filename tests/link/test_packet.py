"""Wire format v1: golden bytes, round trips, exact wire_size, and a fuzzed decoder."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from link.entropy import PriorCode
from link.errors import (
    AuthenticationFailed,
    InvalidFrame,
    LimitExceeded,
    LinkError,
    MalformedPacket,
    PriorMismatch,
)
from link.frame import Frame
from link.header import INFO_LEN, MASK_ALL, MASK_NONE, MASK_RUNS, parse_header
from link.packet import open_fragment, pack, plan, wire_size
from link.reassembly import unpack
from link.security import KeyStore, Opener, Sealer
from link.tokenizers import get_tokenizer

# The golden frame (tests/conftest.py) unsealed: see link/README.md for the field-by-field reading.
GOLDEN_CLEAR = bytes.fromhex("01100102030400000005010204000008018bcfe5680000200010b100402ffe00")
# ... and sealed with key 000102..0f, 8-byte AES-CCM tag.
GOLDEN_SEALED = bytes.fromhex("01700102030400000005010204000008018bcfe568000020001030c0b1b2ca2af6071efbbcbd732b")
# ... cut to a 34-byte MTU with a 4-byte tag: two fragments, each placeable alone.
GOLDEN_SPLIT = [
    bytes.fromhex("01300102030400000005010204000003018bcfe568000020001021c8f5985515d2"),
    bytes.fromhex("01200102030400000005010204000305702385ff97c9d0ce"),
]


def opener(key: bytes, device: int, tag_len: int = 8) -> Opener:
    return Opener(KeyStore({device: key}), tag_len=tag_len)


def test_golden_clear(golden_frame):
    assert pack(golden_frame, mtu=255, sealer=None) == [GOLDEN_CLEAR]
    got = unpack([GOLDEN_CLEAR], None)
    assert got.complete and got.to_frame() == golden_frame


def test_golden_sealed(golden_frame, golden_key):
    sealer = Sealer(golden_key, golden_frame.device_id)
    assert pack(golden_frame, mtu=255, sealer=sealer) == [GOLDEN_SEALED]
    assert unpack([GOLDEN_SEALED], opener(golden_key, golden_frame.device_id)).to_frame() == golden_frame


def test_golden_split(golden_frame, golden_key):
    frags = pack(golden_frame, mtu=34, sealer=Sealer(golden_key, golden_frame.device_id, tag_len=4))
    assert frags == GOLDEN_SPLIT
    assert all(len(f) <= 34 for f in frags)
    op = opener(golden_key, golden_frame.device_id, 4)
    assert unpack(frags, op).to_frame() == golden_frame
    heads = [parse_header(f) for f in frags]
    assert [(h.slice_start, h.slice_end) for h in heads] == [(0, 3), (3, 8)]
    assert heads[0].info and not heads[1].info and heads[0].capture_ms == golden_frame.capture_ms


def test_header_fields(golden_frame):
    h = parse_header(GOLDEN_CLEAR)
    assert (h.device_id, h.counter, h.tokenizer_id, h.grid_h, h.grid_w) == (0x01020304, 5, 1, 2, 4)
    assert (h.capture_ms, h.width, h.height, h.tag_len) == (1_700_000_000_000, 32, 16, 0)
    assert h.size == 16 + INFO_LEN
    assert h.pack() == GOLDEN_CLEAR[: h.size]


@pytest.mark.parametrize("mtu", [51, 115, 222, 240, 65536])
@pytest.mark.parametrize("clustered", [False, True])
def test_round_trip_and_exact_size(frame_factory, mtu, clustered):
    frame = frame_factory(mtu, clustered=clustered)
    key = bytes(range(32))
    frags = pack(frame, mtu=mtu, sealer=Sealer(key, frame.device_id))
    assert max(map(len, frags)) <= mtu
    assert sum(map(len, frags)) == wire_size(frame, mtu=mtu, tag_len=8)
    got = unpack(frags, opener(key, frame.device_id))
    assert got.complete and got.to_frame() == frame
    assert got.fragments_total == got.fragments_received == len(frags)


def test_fragments_are_full(frame_factory):
    """Greedy fill: every fragment but the last is within a few bytes of the MTU."""
    frame = frame_factory(3)
    sizes = [p.size for p in plan(frame, mtu=51, tag_len=8)]
    assert all(s <= 51 for s in sizes)
    assert min(sizes[:-1]) >= 51 - 4


def prior_for(spec_id: int = 1, seed: int = 0) -> tuple[PriorCode, np.ndarray]:
    spec = get_tokenizer(spec_id)
    rng = np.random.default_rng(seed)
    counts = (rng.pareto(1.2, spec.codebook_size) * 100).astype(np.uint32)
    return PriorCode.from_counts(spec, counts), counts


def test_prior_mode_round_trip_and_mismatch(frame_factory):
    code, counts = prior_for()
    p = counts / counts.sum()
    frame = frame_factory(1)
    rng = np.random.default_rng(1)
    frame = Frame(**{**frame.__dict__, "indices": rng.choice(1024, size=frame.indices.size, p=p)})
    frags = pack(frame, mtu=222, sealer=None, prior=code)
    assert sum(map(len, frags)) == wire_size(frame, mtu=222, tag_len=0, prior=code)
    assert sum(map(len, frags)) < wire_size(frame, mtu=222, tag_len=0)
    assert any(parse_header(f).prior_id == code.id for f in frags)
    assert unpack(frags, None, priors={1: code}).to_frame() == frame
    other, _ = prior_for(seed=1)
    with pytest.raises(PriorMismatch):
        unpack(frags, None, priors={1: other})
    with pytest.raises(PriorMismatch):
        unpack(frags, None)


def test_uniform_prior_never_used(frame_factory):
    spec = get_tokenizer(1)
    uniform = PriorCode.from_counts(spec, np.ones(spec.codebook_size, dtype=np.uint32))
    frame = frame_factory(2)
    frags = pack(frame, mtu=222, sealer=None, prior=uniform)
    assert all(parse_header(f).prior_id is None for f in frags)


def test_mask_modes():
    def frame(kept):
        kept = np.asarray(kept, dtype=bool)
        return Frame.from_index_grid(np.zeros(kept.shape, dtype=int), kept, device_id=1, counter=1,
                                     capture_ms=0, width=64, height=64, tokenizer_id=1)

    full, empty = frame(np.ones((8, 8))), frame(np.zeros((8, 8)))
    assert parse_header(pack(full, mtu=1000, sealer=None)[0]).mask_mode == MASK_ALL
    only = pack(empty, mtu=1000, sealer=None)
    assert parse_header(only[0]).mask_mode == MASK_NONE and len(only[0]) == 16 + INFO_LEN
    block = np.zeros((32, 32))
    block[8:20, 4:28] = 1
    assert parse_header(pack(frame(block), mtu=5000, sealer=None)[0]).mask_mode == MASK_RUNS
    for f in (full, empty, frame(block)):
        assert unpack(pack(f, mtu=60, sealer=None)).to_frame() == f


def test_mtu_too_small(golden_frame, golden_key):
    with pytest.raises(LimitExceeded):
        pack(golden_frame, mtu=30, sealer=Sealer(golden_key, golden_frame.device_id))


def test_tampering_and_wrong_key(golden_frame, golden_key):
    frags = pack(golden_frame, mtu=255, sealer=Sealer(golden_key, golden_frame.device_id))
    good = opener(golden_key, golden_frame.device_id)
    for i in range(len(frags[0])):
        bad = bytearray(frags[0])
        bad[i] ^= 0x40
        with pytest.raises(LinkError):
            open_fragment(bytes(bad), good)
    with pytest.raises(AuthenticationFailed):
        open_fragment(frags[0], opener(bytes(16), golden_frame.device_id))
    with pytest.raises(AuthenticationFailed):  # a sealed fragment with no opener
        open_fragment(frags[0], None)
    with pytest.raises(AuthenticationFailed):  # an unsealed fragment where a seal is required
        open_fragment(GOLDEN_CLEAR, good)


def test_wire_size_is_fast(frame_factory):
    """The edge binary-searches kept sets with wire_size; keep it in the low milliseconds."""
    frame = frame_factory(4)
    wire_size(frame, mtu=51)
    best = min(_cpu_time(lambda: wire_size(frame, mtu=51)) for _ in range(5))
    assert best < 0.03  # ~3-5 ms of CPU on one core; CPU time, so a busy machine does not flake


def _cpu_time(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


@st.composite
def frames(draw):
    tokenizer_id = draw(st.sampled_from([1, 2, 16]))
    spec = get_tokenizer(tokenizer_id)
    gh, gw = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    mode = draw(st.sampled_from(["random", "blocks", "all", "none"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if mode == "random":
        kept = rng.random((gh, gw)) < draw(st.floats(0, 1))
    elif mode == "blocks":
        kept = np.repeat(rng.random(gh * gw // 7 + 1) < 0.4, 7)[: gh * gw].reshape(gh, gw)
    else:
        kept = np.full((gh, gw), mode == "all")
    return Frame.from_index_grid(rng.integers(0, spec.codebook_size, (gh, gw)), kept,
                                 device_id=draw(st.integers(0, 2**32 - 1)), counter=draw(st.integers(0, 2**32 - 1)),
                                 capture_ms=draw(st.integers(0, 2**48 - 1)), width=draw(st.integers(1, 65535)),
                                 height=draw(st.integers(1, 65535)), tokenizer_id=tokenizer_id)


@settings(max_examples=300)
@given(frames(), st.sampled_from([48, 51, 64, 115, 222, 240, 65536]), st.sampled_from([0, 4, 8, 16]),
       st.booleans())
def test_wire_size_equals_pack_and_round_trips(frame, mtu, tag_len, with_prior):
    prior = prior_for(frame.tokenizer_id)[0] if with_prior and frame.tokenizer_id == 1 else None
    sealer = Sealer(bytes(16), frame.device_id, tag_len=tag_len) if tag_len else None
    try:
        frags = pack(frame, mtu=mtu, sealer=sealer, prior=prior)
    except LimitExceeded:
        with pytest.raises(LimitExceeded):
            wire_size(frame, mtu=mtu, tag_len=tag_len, prior=prior)
        return
    assert sum(map(len, frags)) == wire_size(frame, mtu=mtu, tag_len=tag_len, prior=prior)
    assert max(map(len, frags)) <= mtu
    op = Opener(KeyStore({frame.device_id: bytes(16)}), tag_len=tag_len) if tag_len else None
    assert unpack(frags, op, priors={1: prior} if prior else None).to_frame() == frame


def _decode(data: bytes, op, priors=None) -> None:
    try:
        open_fragment(data, op, priors=priors)
    except LinkError as exc:
        assert isinstance(exc.reason, str) and exc.reason


@settings(max_examples=4000)
@given(st.binary(max_size=80))
def test_fuzz_random_bytes(data):
    _decode(data, None)
    _decode(b"\x01" + data, None)


def _valid_fragments() -> list[bytes]:
    from tests.conftest import make_frame

    code = prior_for()[0]
    out = [GOLDEN_CLEAR, *GOLDEN_SPLIT]
    out += pack(make_frame(9, grid=(6, 9)), mtu=40, sealer=None)
    out += pack(make_frame(10, grid=(12, 12), clustered=True), mtu=300, sealer=None, prior=code)
    return out


VALID = _valid_fragments()
PRIORS = {1: prior_for()[0]}


@settings(max_examples=2500)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(-4, 4))
def test_fuzz_mutated_fragments(frag, edits, resize):
    data = bytearray(frag)
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    if resize > 0:
        data += bytes(resize)
    elif resize < 0:
        del data[resize:]
    _decode(bytes(data), None, PRIORS)


@settings(max_examples=1500)
@given(st.sampled_from(GOLDEN_SPLIT), st.integers(0, 200), st.integers(1, 255))
def test_fuzz_mutated_sealed(frag, pos, xor):
    data = bytearray(frag)
    data[pos % len(data)] ^= xor
    with pytest.raises(LinkError):
        open_fragment(bytes(data), opener(bytes(range(16)), 0x01020304, 4))


def test_frame_validation(golden_frame):
    base = dict(golden_frame.__dict__)
    bad = [
        {"device_id": -1}, {"counter": 2**32}, {"capture_ms": 2**48}, {"width": 0}, {"grid_h": 256},
        {"kept": np.ones((2, 4), dtype=int)}, {"indices": np.array([1, 2, 3])},
        {"indices": np.array([1, 2, 3, 1024])}, {"grid_w": 5}, {"device_id": True},
    ]
    for change in bad:
        with pytest.raises(InvalidFrame):
            Frame(**{**base, **change})
    with pytest.raises(LinkError):
        Frame(**{**base, "tokenizer_id": 99})


def test_malformed_reasons():
    with pytest.raises(MalformedPacket):
        parse_header(b"\x01")
    from link.errors import UnsupportedVersion

    with pytest.raises(UnsupportedVersion):
        parse_header(b"\x02" + GOLDEN_CLEAR[1:])
