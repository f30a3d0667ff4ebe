"""Serial transport over a real pseudo-terminal pair, with pacing measured against LoRa airtime."""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest

from link.errors import LimitExceeded
from link.framing import Deframer, encode_frame
from link.transports.config import SerialConfig
from link.transports.serial import SerialTransport


class PtyPeer:
    """The far end of the line: reads the master side with arrival timestamps."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        self.name = os.ttyname(self.slave)
        self.deframer = Deframer()
        self.frames: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.02)
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    return
                now = time.monotonic()
                self.frames += [(now, f) for f in self.deframer.feed(data)]

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def peer():
    p = PtyPeer()
    yield p
    p.close()


def test_send_and_recv_over_pty(peer):
    with SerialTransport(SerialConfig(url=peer.name, baudrate=115200, pace=False)) as t:
        payloads = [bytes([i]) * (i * 7 % 200) + b"\x00tail" for i in range(20)]
        for p in payloads:
            t.send(p)
        deadline = time.monotonic() + 5
        while len(peer.frames) < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [f for _, f in peer.frames] == payloads
        peer.write(b"\x13garbage\x00" + encode_frame(b"down") + encode_frame(b"link"))
        assert t.recv(timeout=2) == b"down" and t.recv(timeout=2) == b"link"
        assert t.recv(timeout=0.05) is None
        assert t.deframer.stats.corrupt == 1
        with pytest.raises(LimitExceeded):
            t.send(bytes(t.max_payload + 1))
        t.send(bytes(t.max_payload))


@pytest.mark.slow
def test_pacing_matches_time_on_air(peer):
    cfg = SerialConfig(url=peer.name, baudrate=115200, pace=True, sf=7, mtu=240, duty_cycle=1.0, guard_s=0.0)
    sizes = [200, 40, 120, 200, 10, 150]
    with SerialTransport(cfg) as t:
        for n in sizes:
            t.send(bytes(range(256))[:n])
        deadline = time.monotonic() + 5
        while len(peer.frames) < len(sizes) and time.monotonic() < deadline:
            time.sleep(0.01)
        arrivals = [a for a, _ in peer.frames]
        expected = [t.airtime_s(len(encode_frame(bytes(range(256))[:n]))) for n in sizes]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    errors = [g - e for g, e in zip(gaps, expected[:-1], strict=False)]
    # never faster than the radio (small slack for read timestamp jitter), never much slower
    print(f"pacing error per gap (s): {[round(e, 4) for e in errors]}")
    assert min(errors) > -0.01, errors
    assert sum(abs(e) for e in errors) / len(errors) < 0.03, errors


def test_duty_cycle_pacing_with_fake_clock():
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    cfg = SerialConfig(url="loop://", pace=True, sf=12, mtu=60, duty_cycle=0.01, duty_window_s=3600)
    with SerialTransport(cfg, clock=lambda: clock[0], sleep=sleep) as t:
        toa = t.profile.time_on_air_s(len(encode_frame(bytes(40))))
        n = int(36.0 // toa)  # 36 s of airtime per hour at 1 %
        for _ in range(n):
            t.send(bytes(40))
        assert clock[0] < 3600
        t.send(bytes(40))  # over budget: held until the first packet leaves the window
        assert clock[0] >= 3600
        assert t.recv(timeout=0.5) == bytes(40)
