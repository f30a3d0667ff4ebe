"""A noisy serial line between two real serial transports, through pseudo-terminal pairs.

edge ``SerialTransport`` -> pty A -> the "line" (a thread that corrupts and drops bytes at a set
rate) -> pty B -> gateway-side ``SerialTransport`` -> ``Reassembler`` with the device's key.

The line knows where each clean frame lay in the byte stream, so the test predicts exactly which
fragments must survive: those whose own bytes (trailing delimiter included) were untouched and
whose predecessor's delimiter survived (a lost delimiter merges two frames into one corrupt
one). Asserted: no crash; every corrupt frame dropped and counted by the deframer (a CRC-16
false accept would be caught by the AEAD and counted as ``auth``); exactly the predicted
fragments delivered, bit-identical; every frame with at least one surviving fragment
reconstructed, its missing slices marked lost.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty

import pytest

from benchmarks.load_test import device_key, make_frame
from link.errors import LinkError
from link.framing import encode_frame
from link.packet import pack
from link.reassembly import Reassembler
from link.security import KeyStore, Opener, Sealer
from link.transports.config import SerialConfig
from link.transports.serial import SerialTransport

DEVICE = 5
FRAMES = 150


class NoisyLine:
    """Copies pty A's master to pty B's master, corrupting (XOR non-zero) or dropping each byte
    with the given probabilities; records which clean frames were touched."""

    def __init__(self, corrupt: float, drop: float, seed: int) -> None:
        self.a_master, a_slave = os.openpty()
        self.b_master, b_slave = os.openpty()
        for fd in (self.a_master, self.b_master):
            tty.setraw(fd)
        self.a_name, self.b_name = os.ttyname(a_slave), os.ttyname(b_slave)
        self._slaves = (a_slave, b_slave)
        self.corrupt, self.drop = corrupt, drop
        self.rng = random.Random(seed)
        self.frame_touched: list[bool] = []  # per clean frame, in stream order
        self.delimiter_touched: list[bool] = []  # its trailing 0x00 corrupted or dropped
        self._cur_touched = False
        self.bytes_in = self.bytes_corrupted = self.bytes_dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.a_master], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(self.a_master, 4096)
            except OSError:
                return
            out = bytearray()
            for byte in data:
                self.bytes_in += 1
                r = self.rng.random()
                if r < self.drop:
                    self.bytes_dropped += 1
                    touched, emit = True, None
                elif r < self.drop + self.corrupt:
                    self.bytes_corrupted += 1
                    touched, emit = True, byte ^ self.rng.randrange(1, 256)
                else:
                    touched, emit = False, byte
                self._cur_touched |= touched
                if emit is not None:
                    out.append(emit)
                if byte == 0:  # end of a clean frame (its delimiter belongs to it)
                    self.frame_touched.append(self._cur_touched)
                    self.delimiter_touched.append(touched)
                    self._cur_touched = False
            if out:
                os.write(self.b_master, bytes(out))

    def deliverable(self) -> list[bool]:
        """Frame i arrives intact iff it is untouched and frame i-1's delimiter was intact too
        (noise inside frame i-1 only costs frame i-1: its delimiter still ends it)."""
        t, d = self.frame_touched, self.delimiter_touched
        return [not t[i] and (i == 0 or not d[i - 1]) for i in range(len(t))]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.a_master, self.b_master, *self._slaves):
            os.close(fd)


@pytest.mark.parametrize(("corrupt", "drop"), [(0.01, 0.0), (0.05, 0.0), (0.01, 0.01)],
                         ids=["corrupt-1pct", "corrupt-5pct", "corrupt-1pct-drop-1pct"])
def test_noisy_serial_line_resyncs_drops_corrupt_fragments_and_rebuilds_frames(corrupt, drop):
    line = NoisyLine(corrupt, drop, seed=int(corrupt * 1000 + drop * 100))
    cfg = SerialConfig(baudrate=115200, pace=False, mtu=240)
    edge = SerialTransport(SerialConfig(**{**cfg.__dict__, "url": line.a_name}))
    gateway = SerialTransport(SerialConfig(**{**cfg.__dict__, "url": line.b_name}))
    sealer = Sealer(device_key(DEVICE), DEVICE)
    sent: list[bytes] = []
    for counter in range(1, FRAMES + 1):
        sent += pack(make_frame(DEVICE, counter, 1_700_000_000_000 + counter), mtu=51, sealer=sealer)
    received: list[bytes] = []
    try:
        def recv_all() -> None:
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < 1.5:
                got = gateway.recv(timeout=0.1)
                if got is not None:
                    received.append(got)
                    quiet_since = time.monotonic()

        reader = threading.Thread(target=recv_all)
        reader.start()
        for f in sent:
            edge.send(f)
        reader.join(60)
        assert not reader.is_alive()
    finally:
        edge.close()
        gateway.close()
        time.sleep(0.1)
        line.close()
    assert len(line.frame_touched) == len(sent)  # the line saw every frame end
    expected = [f for f, ok in zip(sent, line.deliverable(), strict=True) if ok]
    stats = gateway.deframer.stats
    # reassembly: every surviving fragment authenticates; frames come out complete or partial
    r = Reassembler(Opener(KeyStore({DEVICE: device_key(DEVICE)})), timeout_s=1.0, max_frames_per_device=FRAMES)
    rejected = 0
    frames = []
    for f in received:
        try:
            frames += r.feed(f, 0.0)
        except LinkError:
            rejected += 1  # a corrupt frame that beat the CRC-16; the AEAD catches it
    frames += r.flush()
    counters_with_a_fragment = {int.from_bytes(f[6:10], "big") for f in expected}
    partial = [fr for fr in frames if not fr.complete]
    print(f"\nserial corrupt {corrupt:.0%} drop {drop:.0%}: {len(sent)} fragments of {FRAMES} frames sent, "
          f"{line.bytes_corrupted} bytes corrupted and {line.bytes_dropped} dropped of {line.bytes_in}; "
          f"deframer: {stats.frames} good, {stats.corrupt} corrupt dropped, {stats.oversized} oversized; "
          f"AEAD rejects {rejected}; frames rebuilt {len(frames)} ({len(frames) - len(partial)} complete, "
          f"{len(partial)} partial), frames with no fragment left {FRAMES - len(frames)}")
    assert [f for f in received if f not in sent] == [] or rejected > 0
    assert sorted(set(received) & set(sent)) == sorted(set(expected))  # exactly the predicted survivors
    assert stats.corrupt + stats.oversized >= 1 and stats.frames == len(received)
    assert {fr.counter for fr in frames} == counters_with_a_fragment  # every frame with a fragment rebuilt
    assert all(fr.lost.any() for fr in partial) and all(not (fr.lost & fr.kept).any() for fr in frames)
    assert sum(fr.fragments_received for fr in frames) == len(expected)


def test_garbage_and_oversized_bursts_between_frames_resync(tmp_path):
    """Line noise of every length between good frames, fed as a stream: nothing is lost but the noise."""
    from link.framing import Deframer

    rng = random.Random(7)
    payloads = [rng.randbytes(rng.randrange(1, 200)) for _ in range(200)]
    stream = bytearray()
    for p in payloads:
        stream += bytes(rng.randrange(1, 256) for _ in range(rng.choice((0, 3, 50, 700)))) + b"\x00"
        stream += encode_frame(p)
    d = Deframer(max_frame=512)
    out = []
    i = 0
    while i < len(stream):
        n = rng.randrange(1, 300)
        out += d.feed(bytes(stream[i : i + n]))
        i += n
    assert out == payloads
    assert d.stats.oversized + d.stats.corrupt > 0 and len(d._buf) <= d.max_frame
