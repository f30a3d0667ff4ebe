"""LoRa airtime (Semtech AN1200.13), duty-cycle budgeting and radio profiles.

Time on air, with T_sym = 2**SF / BW::

    T_preamble = (n_preamble + 4.25) * T_sym
    n_payload  = 8 + max(ceil((8 PL - 4 SF + 28 + 16 CRC - 20 IH) / (4 (SF - 2 DE))) * (CR + 4), 0)
    ToA        = T_preamble + n_payload * T_sym

IH = 1 for implicit header, DE = 1 with low-data-rate optimisation (on by default when T_sym
>= 16 ms, as the SX127x/SX126x drivers do), CR = 1..4 for 4/5..4/8. Checked against the
datasheet calculator: SF7/125k/CR4-5 10 B = 41.216 ms, SF9 13 B = 164.864 ms,
SF11 (LDRO) 10 B = 577.536 ms.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from link.errors import LimitExceeded

# Largest application payload per spreading factor at 125 kHz (LoRaWAN EU868 DR0..DR5).
LORA_MTU: dict[int, int] = {12: 51, 11: 51, 10: 51, 9: 115, 8: 222, 7: 222}
# UART LoRa modules in transparent mode (Ebyte E22 class) cut the stream into sub-packets of
# up to 240 bytes; one framed fragment must fit one sub-packet.
E22_SUBPACKET = 240
MTUS = (51, 115, 222, 240)


def time_on_air_s(payload_bytes: int, sf: int, bw_hz: int = 125_000, cr: int = 1, preamble: int = 8,
                  explicit_header: bool = True, crc: bool = True, ldro: bool | None = None) -> float:
    """Seconds one LoRa packet of ``payload_bytes`` occupies the channel."""
    if not 6 <= sf <= 12:
        raise ValueError(f"spreading factor must be 6..12, got {sf}")
    if not 1 <= cr <= 4:
        raise ValueError(f"coding rate must be 1..4 (4/5..4/8), got {cr}")
    if payload_bytes < 0 or bw_hz <= 0 or preamble < 0:
        raise ValueError("payload_bytes, bw_hz and preamble must be non-negative (bw positive)")
    t_sym = (1 << sf) / bw_hz
    de = (t_sym >= 0.016) if ldro is None else ldro
    ih = 0 if explicit_header else 1
    num = 8 * payload_bytes - 4 * sf + 28 + 16 * int(crc) - 20 * ih
    n_payload = 8 + max(math.ceil(num / (4 * (sf - 2 * int(de)))) * (cr + 4), 0)
    return (preamble + 4.25) * t_sym + n_payload * t_sym


class DutyCycle:
    """Sliding-window airtime budget: at most ``fraction * window_s`` seconds on air per window.

    ``wait_time`` says how long to hold a transmission of ``toa`` seconds; ``record`` books one.
    """

    def __init__(self, fraction: float = 0.01, window_s: float = 3600.0) -> None:
        if not 0 < fraction <= 1 or window_s <= 0:
            raise ValueError(f"fraction must be in (0, 1] and window_s positive, got {fraction}, {window_s}")
        self.fraction, self.window_s = fraction, window_s
        self.budget_s = fraction * window_s
        self._log: deque[tuple[float, float]] = deque()  # (start time, airtime)
        self._used = 0.0

    def _prune(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - self.window_s:
            self._used -= self._log.popleft()[1]

    def used(self, now: float) -> float:
        self._prune(now)
        return self._used

    def wait_time(self, toa: float, now: float) -> float:
        if toa > self.budget_s:
            raise LimitExceeded(f"{toa:.3f} s on air exceeds the whole budget of {self.budget_s:.3f} s")
        self._prune(now)
        excess = self._used + toa - self.budget_s
        if excess <= 1e-12 or self.fraction >= 1:
            return 0.0
        for start, airtime in self._log:  # wait until enough old transmissions leave the window
            excess -= airtime
            if excess <= 1e-12:
                return max(0.0, start + self.window_s - now)
        return self.window_s  # unreachable: toa <= budget

    def record(self, toa: float, now: float) -> None:
        self._prune(now)
        self._log.append((now, toa))
        self._used += toa


@dataclass(frozen=True)
class RadioProfile:
    """A LoRa channel setting; ``mtu`` is the largest over-the-air payload in bytes."""

    sf: int = 9
    bw_hz: int = 125_000
    cr: int = 1
    preamble: int = 8
    mtu: int = 115
    duty_cycle: float = 0.01
    explicit_header: bool = True
    crc: bool = True

    def __post_init__(self) -> None:
        if not 6 <= self.sf <= 12 or not 1 <= self.cr <= 4 or self.bw_hz <= 0 or not 0 < self.duty_cycle <= 1:
            raise ValueError(f"invalid radio profile {self}")
        if self.mtu < 1 or self.mtu > 255:
            raise ValueError(f"mtu must be 1..255 bytes for LoRa, got {self.mtu}")

    @classmethod
    def for_sf(cls, sf: int, **kw: object) -> RadioProfile:
        """The profile for a spreading factor at 125 kHz with the LoRaWAN payload limit as MTU."""
        return cls(sf=sf, mtu=LORA_MTU[sf], **kw)  # type: ignore[arg-type]

    def time_on_air_s(self, payload_bytes: int) -> float:
        return time_on_air_s(payload_bytes, self.sf, self.bw_hz, self.cr, self.preamble,
                             self.explicit_header, self.crc)
