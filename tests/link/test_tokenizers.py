"""Tokenizer table, priors on disk, and the prefix codes of the payload."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from link.entropy import PriorCode, eg_bits, eg_len, eg_read
from link.errors import MalformedPacket, UnknownTokenizer
from link.tokenizers import PRIOR_DIR_ENV, TOKENIZERS, get_tokenizer, load_prior


def test_table_is_stable():
    # ids are wire constants: never renumber, never reuse
    assert {k: (v.name, v.codebook_size, v.factor) for k, v in TOKENIZERS.items()} == {
        1: ("tc-vq-f8-k1024", 1024, 8), 2: ("tc-vq-f16-k1024", 1024, 16), 3: ("tc-vq2-f16c-f8", 1024, 8),
        16: ("llamagen-vq-ds16-c2i", 16384, 16),
    }
    assert get_tokenizer(1).index_bits == 10 and get_tokenizer(16).index_bits == 14
    v2 = get_tokenizer(3)
    assert v2.layered and v2.coarse_levels == (7, 5, 5, 5) and v2.coarse_grid(41, 61) == (21, 31)
    assert not get_tokenizer(1).layered
    with pytest.raises(UnknownTokenizer) as err:
        get_tokenizer(4)
    assert err.value.reason == "tokenizer" and "tc-vq-f8-k1024" in str(err.value)


def test_load_prior(tmp_path, monkeypatch):
    spec = get_tokenizer(1)
    assert load_prior(spec, tmp_path) is None
    counts = np.arange(1024, dtype=np.uint32)
    np.save(tmp_path / "tc-vq-f8-k1024.prior.npy", counts)
    assert np.array_equal(load_prior(spec, tmp_path), counts)
    monkeypatch.setenv(PRIOR_DIR_ENV, str(tmp_path))
    assert load_prior(spec) is not None
    np.save(tmp_path / "tc-vq-f8-k1024.prior.npy", np.ones(5))
    with pytest.raises(ValueError):
        load_prior(spec)


def test_prior_code_is_deterministic():
    spec = get_tokenizer(1)
    counts = np.random.default_rng(0).integers(0, 10_000, 1024).astype(np.uint32)
    a, b = PriorCode.from_counts(spec, counts), PriorCode.from_counts(spec, counts.copy())
    assert a.id == b.id != 0 and np.array_equal(a.lengths, b.lengths)
    assert PriorCode.from_counts(spec, counts + 5000).id != a.id
    kraft = np.sum(2.0 ** -a.lengths.astype(float))
    assert kraft == pytest.approx(1.0)


@settings(max_examples=200)
@given(st.lists(st.integers(0, 1023), max_size=300), st.integers(0, 3))
def test_huffman_round_trip(symbols, seed):
    spec = get_tokenizer(1)
    counts = (np.random.default_rng(seed).pareto(1.0, 1024) * 50).astype(np.uint32)
    code = PriorCode.from_counts(spec, counts)
    bits = code.encode(np.array(symbols, dtype=np.int64))
    assert len(bits) == code.cost(np.array(symbols, dtype=np.int64))
    out, pos = code.decode(bits.tolist(), 0, len(symbols))
    assert out.tolist() == symbols and pos == len(bits)
    with pytest.raises(MalformedPacket):
        code.decode(bits.tolist()[:-1], 0, len(symbols)) if symbols else (_ for _ in ()).throw(MalformedPacket())


@settings(max_examples=300)
@given(st.integers(0, 70000), st.integers(0, 7))
def test_exp_golomb(n, k):
    bits = eg_bits(n, k)
    assert len(bits) == eg_len(n, k)
    assert eg_read(bits, 0, k) == (n, len(bits))
