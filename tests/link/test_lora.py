"""LoRa time on air against the Semtech calculator, duty-cycle budget, radio profiles."""

from __future__ import annotations

import pytest

from link.errors import LimitExceeded
from link.lora import LORA_MTU, DutyCycle, RadioProfile, time_on_air_s


@pytest.mark.parametrize(
    ("payload", "sf", "expected_ms"),
    [(10, 7, 41.216), (13, 9, 164.864), (10, 11, 577.536), (51, 12, 2465.792), (222, 7, 348.416)],
)
def test_time_on_air(payload, sf, expected_ms):
    assert time_on_air_s(payload, sf) * 1000 == pytest.approx(expected_ms, abs=1e-6)


def test_ldro_and_header_options():
    assert time_on_air_s(10, 11, ldro=False) < time_on_air_s(10, 11)
    assert time_on_air_s(10, 7, explicit_header=False) < time_on_air_s(10, 7)
    assert time_on_air_s(10, 7, cr=4) > time_on_air_s(10, 7, cr=1)
    with pytest.raises(ValueError):
        time_on_air_s(10, 13)


def test_duty_cycle():
    d = DutyCycle(fraction=0.01, window_s=100)  # 1 s per 100 s
    assert d.wait_time(0.6, now=0) == 0
    d.record(0.6, now=0)
    d.record(0.3, now=10)
    assert d.wait_time(0.1, now=20) == 0
    assert d.wait_time(0.2, now=20) == pytest.approx(80)  # until the 0.6 s leaves the window
    assert d.wait_time(0.2, now=100.5) == 0
    with pytest.raises(LimitExceeded):
        d.wait_time(2.0, now=0)


def test_profiles():
    assert sorted(set(LORA_MTU.values())) == [51, 115, 222]
    p = RadioProfile.for_sf(9)
    assert p.mtu == 115 and p.time_on_air_s(13) == pytest.approx(0.164864)
    with pytest.raises(ValueError):
        RadioProfile(sf=5)
