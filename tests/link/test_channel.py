"""Channel models: seeded, a fragment is lost on any bit error, loss falls with SNR."""

from __future__ import annotations

import numpy as np
import pytest

from link.channel import CHANNELS, ChannelConfig, demodulate, make_channel, modulate
from link.errors import BackendUnavailable


@pytest.mark.parametrize("mod", ["bpsk", "qpsk", "16qam"])
def test_modem_round_trip(mod):
    bits = np.random.default_rng(0).integers(0, 2, 400).astype(np.uint8)
    s = modulate(bits, mod)
    assert np.mean(np.abs(s) ** 2) == pytest.approx(1.0, rel=0.1)
    assert np.array_equal(demodulate(s, mod), bits)


def test_erasure_rate_and_seed():
    frags = [bytes(20)] * 4000
    a = make_channel(ChannelConfig(type="erasure", loss=0.2, seed=3)).lost(frags)
    b = make_channel(ChannelConfig(type="erasure", loss=0.2, seed=3)).lost(frags)
    assert np.array_equal(a, b) and a.mean() == pytest.approx(0.2, abs=0.03)
    assert make_channel(ChannelConfig()).transmit(frags[:3]) == frags[:3]


@pytest.mark.parametrize("kind", ["awgn", "rayleigh"])
def test_loss_falls_with_snr(kind):
    frags = [bytes(range(50))] * 100
    rates = [make_channel(ChannelConfig(type=kind, snr_db=s, modulation="qpsk")).lost(frags).mean()
             for s in (4, 12, 30)]
    assert rates[0] > rates[1] >= rates[2]
    assert rates[0] > 0.5
    if kind == "awgn":
        assert rates[2] == 0


def test_registry_and_ldpc_optional():
    assert set(CHANNELS) == {"none", "erasure", "awgn", "rayleigh"}
    with pytest.raises(ValueError):
        make_channel(ChannelConfig(type="bogus"))  # type: ignore[arg-type]
    from link.ldpc import Ldpc5G

    try:
        import sionna  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable):
            Ldpc5G(64, 128)
