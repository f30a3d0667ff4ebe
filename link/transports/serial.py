"""Serial transport: COBS+CRC frames over a UART, paced for a LoRa module in transparent mode.

The port only moves bytes (``serial.serial_for_url``: /dev/tty*, pseudo-terminals, loop://);
framing is ``link.framing``. With ``pace`` on, each frame is held until the previous one has
left the radio (UART transfer + LoRa time on air of the framed bytes + a guard) and until the
duty-cycle budget allows it, so a module with a small buffer (Ebyte E22/E32 class) is never
overrun and the regulatory duty cycle holds. Turn ``pace`` off for wired links and tests.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import serial

from link.errors import LimitExceeded, TransportError
from link.framing import Deframer, encode_frame, max_payload
from link.lora import DutyCycle, RadioProfile
from link.transports.base import Transport
from link.transports.config import SerialConfig, TransportConfig


class SerialTransport(Transport):
    name = "serial"

    def __init__(self, cfg: SerialConfig, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.profile = RadioProfile(sf=cfg.sf, bw_hz=cfg.bw_hz, cr=cfg.cr, preamble=cfg.preamble,
                                    mtu=min(cfg.mtu, 255), duty_cycle=cfg.duty_cycle)
        self.duty = DutyCycle(cfg.duty_cycle, cfg.duty_window_s)
        self.deframer = Deframer(max_frame=2 * cfg.mtu + 16)
        self._clock, self._sleep = clock, sleep
        self._busy_until = 0.0
        self._rx: deque[bytes] = deque()
        try:
            self.port = serial.serial_for_url(cfg.url, baudrate=cfg.baudrate, timeout=0.05, write_timeout=10)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise TransportError(f"cannot open serial port {cfg.url}: {exc}") from None

    @property
    def max_payload(self) -> int:
        """Largest fragment whose frame fits one radio packet: pack with ``mtu=max_payload``."""
        return max_payload(self.cfg.mtu)

    def airtime_s(self, framed_len: int) -> float:
        """Seconds the link is busy with one frame: UART transfer + time on air + guard."""
        return framed_len * 10 / self.cfg.baudrate + self.profile.time_on_air_s(framed_len) + self.cfg.guard_s

    def send(self, data: bytes) -> None:
        frame = encode_frame(data)
        if len(frame) > self.cfg.mtu:
            raise LimitExceeded(f"framed {len(frame)} bytes exceed the radio MTU {self.cfg.mtu}; "
                                f"pack fragments to at most {self.max_payload} bytes")
        if self.cfg.pace:
            toa = self.profile.time_on_air_s(len(frame))
            now = self._clock()
            wait = max(self._busy_until - now, self.duty.wait_time(toa, now))
            if wait > 0:
                self._sleep(wait)
            now = self._clock()
            self._busy_until = now + self.airtime_s(len(frame))
            self.duty.record(toa, now)
        try:
            self.port.write(frame)
            self.port.flush()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"serial write failed: {exc}") from None

    def recv(self, timeout: float | None = None) -> bytes | None:
        deadline = None if timeout is None else self._clock() + timeout
        while not self._rx:
            remaining = None if deadline is None else deadline - self._clock()
            if remaining is not None and remaining <= 0:
                return None
            self.port.timeout = 0.05 if remaining is None else min(0.05, remaining)
            try:
                chunk = self.port.read(max(1, min(self.port.in_waiting, self.cfg.read_chunk)))
            except (serial.SerialException, OSError) as exc:
                raise TransportError(f"serial read failed: {exc}") from None
            if chunk:
                self._rx.extend(self.deframer.feed(chunk))
        return self._rx.popleft()

    def close(self) -> None:
        if self.port.is_open:
            self.port.close()


def create(cfg: TransportConfig) -> Transport:
    return SerialTransport(cfg.serial)
