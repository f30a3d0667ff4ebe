"""Long fuzz runs of the parsers that face the network and the operator, outside CI.

    python fuzz/run_fuzz.py --target packet --count 1000000 --out fuzz/results/packet.json

Targets (each a function of one input that may raise only its allowed error types):

* ``packet``: ``link.packet.open_fragment`` on mutated valid fragments (sealed and clear) and on
  raw random bytes; allowed: ``LinkError``. A decoded fragment must be self-consistent.
* ``reassembler``: ``link.reassembly.Reassembler.feed``/``expire``/``flush`` on sequences of
  mutated fragments of three frames with tight limits; allowed: ``LinkError``; the buffers
  must stay within their byte limit and be empty after ``flush``.
* ``deframer``: ``link.framing.Deframer.feed`` on mutated framed streams cut into random
  chunks; nothing may raise, the buffer stays bounded, and a good frame that follows the noise
  after a delimiter always comes out.
* ``control``: ``link.control.ControlOpener.open`` (the camera's side of the MQTT downlink) on
  mutated sealed key requests and acks and on raw random bytes; allowed: ``LinkError``. Only an
  unmodified seed may authenticate, and only once per opener (replay).
* ``config``: ``tomllib`` + ``link.config.from_dict`` for the cloud, edge (with ``problems()``),
  gateway and transport configs, on mutated example TOML files and on mutated parsed tables;
  allowed: ``ConfigError``.

Engines: ``random`` (default; a seeded mutation loop, no dependencies) and ``atheris``
(coverage-guided libFuzzer, when ``pip install atheris`` works; it runs in a child process and
the count comes from libFuzzer's summary). Either way the result is one JSON object: target,
engine, inputs, crashes (up to 20 kept, each with the input in hex, the exception and the last
traceback line), seconds. Exit status 1 when anything crashed. A crash found here becomes a
regression test in ``tests/reliability/test_fuzz_regressions.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

TARGETS = ("packet", "reassembler", "deframer", "control", "config")
MAX_CRASHES_KEPT = 20


# -- seeds ---------------------------------------------------------------------------------------------
def _frame(seed: int, grid: tuple[int, int], keep: float, counter: int, device: int = 7, tokenizer_id: int = 1):
    from link.frame import Frame
    from link.tokenizers import get_tokenizer

    rng = np.random.default_rng(seed)
    kept = rng.random(grid) < keep
    spec = get_tokenizer(tokenizer_id)
    coarse = None
    if spec.layered:  # wire v2: a smooth-ish coarse layer, as the encoder makes
        shape = (len(spec.coarse_levels), *spec.coarse_grid(*grid))
        coarse = np.minimum(rng.integers(0, 3, size=shape), np.array(spec.coarse_levels).reshape(-1, 1, 1) - 1)
    return Frame.from_index_grid(rng.integers(0, 1024, size=grid), kept, device_id=device, counter=counter,
                                 capture_ms=1_700_000_000_000 + seed, width=grid[1] * 8, height=grid[0] * 8,
                                 tokenizer_id=tokenizer_id, coarse=coarse)


KEY = bytes(range(16))


def _opener():
    from link.security import KeyStore, Opener

    return Opener(KeyStore({7: KEY}))


def packet_seeds() -> list[bytes]:
    from link.packet import pack
    from link.security import Sealer

    seeds: list[bytes] = []
    for i, (grid, keep, mtu) in enumerate([((2, 4), 0.5, 200), ((8, 12), 0.3, 51), ((8, 8), 1.0, 60),
                                           ((8, 8), 0.0, 60), ((16, 16), 0.1, 115), ((3, 200), 0.9, 240)]):
        for tid in (1, 3):  # wire v1 and v2
            f = _frame(i, grid, keep, counter=i + 1, tokenizer_id=tid)
            seeds += pack(f, mtu=mtu, sealer=None)
            seeds += pack(f, mtu=mtu, sealer=Sealer(KEY, 7))
    return seeds


def deframer_seeds() -> list[bytes]:
    from link.framing import encode_frame

    return [encode_frame(p) for p in packet_seeds()[:8]] + [b"\x00", encode_frame(b""), encode_frame(bytes(300))]


def control_seeds() -> list[bytes]:
    from link.control import REASONS, ack, key_request, seal

    seeds = [seal(key_request(7, c, r), KEY) for c in (0, 1, 5, 0xFFFF_FFFF) for r in REASONS]
    return seeds + [seal(ack(7, c), KEY, tag_len=t) for c in (2, 300) for t in (4, 8, 16)]


def config_seeds() -> list[bytes]:
    return [p.read_bytes() for p in (ROOT / "cloud" / "cloud.example.toml", ROOT / "edge" / "edge.example.toml",
                                     ROOT / "cloud" / "gateway.example.toml") if p.exists()]


# -- mutation ------------------------------------------------------------------------------------------
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x70)


def mutate(rng: random.Random, data: bytes, seeds: list[bytes], max_len: int = 2048) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(9)
        if op == 0 and b:  # flip a bit
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # set a byte
            b[rng.randrange(len(b))] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        elif op == 2:  # insert bytes
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        elif op == 3 and b:  # delete a run
            i = rng.randrange(len(b))
            del b[i : i + rng.randrange(1, 9)]
        elif op == 4 and b:  # truncate
            del b[rng.randrange(len(b)) :]
        elif op == 5:  # splice with another seed
            other = rng.choice(seeds)
            cut = rng.randrange(len(b) + 1)
            b = b[:cut] + other[rng.randrange(len(other) + 1) :]
        elif op == 6 and len(b) > 1:  # duplicate a chunk
            i = rng.randrange(len(b))
            j = min(len(b), i + rng.randrange(1, 17))
            b[j:j] = b[i:j]
        elif op == 7 and len(b) >= 2:  # overwrite a 16-bit field
            i = rng.randrange(len(b) - 1)
            b[i : i + 2] = rng.choice((0, 1, 0x7FFF, 0x8000, 0xFFFF, rng.randrange(65536))).to_bytes(2, "big")
        else:  # random bytes
            b = bytearray(rng.randbytes(rng.randrange(0, 96)))
    return bytes(b[:max_len])


# -- targets (one input each; raise only the allowed errors) ------------------------------------------
class Invariant(AssertionError):
    """A target's own check failed: a bug even though no exception escaped the code under test."""


def _packet_target() -> Callable[[bytes], None]:
    from link.errors import LinkError
    from link.packet import open_fragment

    opener = _opener()

    def run(data: bytes) -> None:
        for op in (None, opener):
            try:
                frag = open_fragment(data, op)
            except LinkError:
                continue
            h = frag.header
            levels = getattr(frag, "levels", None)
            if levels is not None:  # a v2 coarse fragment
                if levels.shape != (4, h.slice_len) or levels.min() < 0 or levels.max() >= 7:
                    raise Invariant(f"decoded coarse fragment inconsistent: {levels.shape}")
                continue
            if frag.kept.shape != (h.slice_len,) or int(frag.kept.sum()) != len(frag.indices):
                raise Invariant(f"decoded fragment inconsistent: slice {h.slice_len}, kept {frag.kept.shape}")
            if len(frag.indices) and (frag.indices.min() < 0 or frag.indices.max() >= 1024):
                raise Invariant("index outside the codebook")
    return run


def _reassembler_target() -> tuple[Callable[[bytes], None], Callable[[random.Random], bytes]]:
    from link.errors import LinkError
    from link.packet import pack
    from link.reassembly import Reassembler
    from link.security import Sealer

    frames = [pack(_frame(30 + i, (8, 12), 0.4, counter=i + 1), mtu=60, sealer=Sealer(KEY, 7)) for i in range(3)]
    frames[1] = pack(_frame(31, (8, 12), 0.4, counter=2), mtu=60, sealer=None)
    opener = _opener()
    opener.allow_unsealed = True
    flat = [f for fr in frames for f in fr]

    def make(rng: random.Random) -> bytes:
        # a "script": u8 count, then per op (u8 frame, u8 fragment, u16 pos, u8 value); encoded so
        # atheris and the random engine share one input format
        ops = bytearray()
        for _ in range(rng.randrange(1, 24)):
            ops += bytes((rng.randrange(3), rng.randrange(16))) + rng.randrange(0, 1 << 16).to_bytes(2, "big")
            ops.append(rng.randrange(256))
        return bytes(ops)

    def run(script: bytes) -> None:
        r = Reassembler(opener, timeout_s=10, max_frames_per_device=2, max_total_bytes=3000)
        now = 0.0
        for i in range(0, len(script) - 4, 5):
            fi, gi, pos, val = script[i] % 3, script[i + 1], int.from_bytes(script[i + 2 : i + 4], "big"), script[i + 4]
            frags = frames[fi]
            data = bytearray(frags[gi % len(frags)]) if gi < 200 else bytearray(flat[gi % len(flat)][: pos % 64])
            if pos < 0xF000 and data:
                data[pos % len(data)] = val
            now += 1.0
            try:
                for got in r.feed(bytes(data), now):
                    if (got.lost & got.kept).any() or got.lost.shape != got.kept.shape:
                        raise Invariant("a frame has positions both lost and kept")
            except LinkError:
                pass
            if r.pending_bytes > r.max_total_bytes:
                raise Invariant(f"reassembly holds {r.pending_bytes} > {r.max_total_bytes} bytes")
        r.expire(now + (script[-1] if script else 0))
        r.flush()
        if r.pending_bytes or r.pending_frames:
            raise Invariant("buffers not empty after flush")
    return run, make


def _deframer_target() -> Callable[[bytes], None]:
    from link.framing import Deframer, encode_frame

    probe = b"tokencast-probe"

    def run(data: bytes) -> None:
        d = Deframer(max_frame=512)
        cut = 1 + (data[0] % 64 if data else 0)
        for i in range(0, len(data), cut):
            d.feed(data[i : i + cut])
            if len(d._buf) > d.max_frame:
                raise Invariant(f"deframer buffer {len(d._buf)} > max_frame {d.max_frame}")
        # after a delimiter the line is in sync again: a good frame must come out intact and last
        # (the pending bytes before the delimiter may themselves be a whole frame)
        if d.feed(b"\x00" + encode_frame(probe))[-1:] != [probe]:
            raise Invariant("deframer did not resynchronise after a delimiter")
    return run


def _control_target() -> Callable[[bytes], None]:
    from link.control import ControlOpener
    from link.errors import LinkError

    seeds = set(control_seeds())

    def run(data: bytes) -> None:
        opener = ControlOpener(KEY, 7, tag_len=len(data) - 12 if len(data) - 12 in (4, 6, 10, 12, 14, 16) else 8)
        try:
            msg = opener.open(data)
        except LinkError:
            return
        if data not in seeds:
            raise Invariant(f"a mutated control message authenticated: {msg}")
        try:
            opener.open(data)
        except LinkError:
            return
        raise Invariant("the same control message was accepted twice")
    return run


def _config_target() -> Callable[[bytes], None]:
    from cloud.config import CloudConfig
    from cloud.gateway import GatewayConfig
    from edge.config import EdgeConfig
    from link.config import ConfigError, from_dict, tomllib  # tomllib: stdlib, or tomli on 3.10
    from link.transports.config import TransportConfig

    classes = (CloudConfig, EdgeConfig, GatewayConfig, TransportConfig)

    def run(data: bytes) -> None:
        try:
            table = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            return  # read_toml turns these into ConfigError; the loaders below are the target
        for cls in classes:
            for t in (table, table.get("transport", {}) if cls is TransportConfig else table):
                try:
                    cfg = from_dict(cls, t, "fuzz.toml")
                    if cls is EdgeConfig:
                        cfg.problems()
                except ConfigError as exc:
                    if "fuzz.toml" not in str(exc):
                        raise Invariant(f"ConfigError does not name the file: {exc}") from None
    return run


def _tweak_toml(rng: random.Random, text: bytes) -> bytes:
    """A structure-aware mutation: change one value of a ``key = value`` line to another TOML type."""
    lines = text.split(b"\n")
    candidates = [i for i, line in enumerate(lines) if b"=" in line and not line.lstrip().startswith(b"#")]
    if not candidates:
        return text
    i = rng.choice(candidates)
    key = lines[i].split(b"=", 1)[0]
    value = rng.choice((b"-1", b"0", b"99999999999999999999", b"1e309", b"nan", b"true", b'"x"', b'""', b"[]",
                        b"[1, \"a\"]", b"{a = 1}", b"\"/etc/passwd\"", b"-0.0", b"inf", b"65536", b"4294967296",
                        b"\"\\u0000\"", b"\"../../x\""))
    if rng.random() < 0.2:
        key = rng.choice((b"unknown_key", b"port", b"type", b"sink", b"id", b"max_batch", b"policy", b"\"\""))
    lines[i] = key + b"= " + value
    return b"\n".join(lines)


def build(target: str) -> tuple[Callable[[bytes], None], Callable[[random.Random], bytes]]:
    """The target's run function and its random-input generator."""
    if target == "packet":
        run, seeds = _packet_target(), packet_seeds()
        return run, lambda rng: mutate(rng, rng.choice(seeds), seeds) if rng.random() < 0.95 else rng.randbytes(
            rng.randrange(120))
    if target == "reassembler":
        return _reassembler_target()
    if target == "deframer":
        run, seeds = _deframer_target(), deframer_seeds()

        def gen(rng: random.Random) -> bytes:
            stream = b"".join(rng.choice(seeds) for _ in range(rng.randrange(1, 5)))
            return bytes((rng.randrange(256),)) + mutate(rng, stream, seeds, max_len=4096)
        return run, gen
    if target == "control":
        run, seeds = _control_target(), control_seeds()
        return run, lambda rng: mutate(rng, rng.choice(seeds), seeds) if rng.random() < 0.95 else rng.randbytes(
            rng.randrange(40))
    if target == "config":
        run, seeds = _config_target(), config_seeds()

        def gen_cfg(rng: random.Random) -> bytes:
            text = rng.choice(seeds)
            for _ in range(rng.randrange(1, 4)):
                text = _tweak_toml(rng, text)
            return mutate(rng, text, seeds, max_len=1 << 16) if rng.random() < 0.3 else text
        return run, gen_cfg
    raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")


# -- engines -------------------------------------------------------------------------------------------
def _crash(data: bytes, exc: BaseException) -> dict[str, str]:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
    return {"input_hex": data.hex(), "exception": f"{type(exc).__name__}: {exc}"[:500], "where": where}


def run_random(target: str, count: int, seed: int, time_limit_s: float | None = None) -> dict[str, object]:
    run, gen = build(target)
    rng = random.Random(seed)
    crashes: list[dict[str, str]] = []
    n_crashes = 0
    t0 = time.monotonic()
    n = 0
    for n in range(1, count + 1):  # noqa: B007 - n is the count done when a time limit stops the loop
        data = gen(rng)
        try:
            run(data)
        except Exception as exc:  # everything that escapes the target's own handling is a finding
            n_crashes += 1
            if len(crashes) < MAX_CRASHES_KEPT:
                crashes.append(_crash(data, exc))
        if time_limit_s is not None and n % 1000 == 0 and time.monotonic() - t0 > time_limit_s:
            break
    return {"target": target, "engine": "random", "seed": seed, "inputs": n, "crashes": n_crashes,
            "crash_samples": crashes, "seconds": round(time.monotonic() - t0, 1)}


def run_atheris(target: str, count: int, seed: int, workdir: Path) -> dict[str, object]:
    """libFuzzer in a child process (it owns the process and exits on the first crash)."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / f"corpus-{target}"
    corpus.mkdir(exist_ok=True)
    _, gen = build(target)
    rng = random.Random(seed)
    for i in range(32):  # seed corpus from the random engine's generator
        (corpus / f"seed-{i}").write_bytes(gen(rng))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--target", target, "--_atheris-child", "--",
                           f"-runs={count}", f"-seed={seed}", f"-artifact_prefix={workdir}/crash-{target}-",
                           "-max_len=4096", "-print_final_stats=1", str(corpus)],
                          capture_output=True, text=True, cwd=ROOT)
    done = re.findall(r"Done (\d+) runs", proc.stderr)
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    inputs = int(done[-1]) if done else int(execs[-1]) if execs else 0
    crashed = proc.returncode != 0
    samples = []
    if crashed:
        for art in sorted(workdir.glob(f"crash-{target}-*")):
            samples.append({"input_hex": art.read_bytes().hex(), "exception": proc.stderr[-1500:], "where": str(art)})
    return {"target": target, "engine": "atheris", "seed": seed, "inputs": inputs, "crashes": int(crashed),
            "crash_samples": samples[:MAX_CRASHES_KEPT], "seconds": round(time.monotonic() - t0, 1)}


def _atheris_child(target: str, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["link", "cloud.config", "edge.config"]):
        run, _ = build(target)
    atheris.Setup([sys.argv[0], *libfuzzer_args], lambda data: run(bytes(data)))
    atheris.Fuzz()


# -- CLI -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=TARGETS, required=True)
    p.add_argument("--count", type=int, default=100_000, help="inputs to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", choices=("auto", "random", "atheris"), default="random",
                   help="auto: atheris if installed, else random")
    p.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds (random engine)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here (also printed)")
    p.add_argument("--workdir", type=Path, default=ROOT / "fuzz" / "work", help="atheris corpus and crash files")
    p.add_argument("--_atheris-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("libfuzzer_args", nargs="*", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args._atheris_child:
        _atheris_child(args.target, args.libfuzzer_args)
        return 0
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "random"
    if engine == "atheris":
        result = run_atheris(args.target, args.count, args.seed, args.workdir)
    else:
        result = run_random(args.target, args.count, args.seed, args.time_limit)
    result["python"] = sys.version.split()[0]
    result["pid"] = os.getpid()
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
