"""``tokencast packet inspect FILE``: show a fragment or a capture of fragments as JSON.

FILE is either one raw fragment, or a capture: fragments each COBS+CRC framed and
concatenated (``link.framing.join_frames``, the same bytes a serial radio link carries). A file
that decodes strictly as frames is a capture; anything else is read as one raw fragment.
Without a key only the clear header is shown; with ``--key-file`` the payload is
authenticated and decoded. Exit 0 on success, 2 with a one-line error for anything malformed;
a capture cut short or holding a bad frame still prints every complete fragment, then exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from link.entropy import PriorCode
from link.errors import FramingError, LinkError, MalformedPacket
from link.framing import decode_frame, split_frames
from link.header2 import parse_any_header
from link.packet import open_fragment
from link.reassembly import assemble
from link.security import KeyStore, Opener, load_key
from link.tokenizers import TOKENIZERS, load_prior


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokencast packet", description="inspect packets and fragments")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print a fragment or a capture file as JSON")
    p.add_argument("file", type=Path)
    p.add_argument("--key-file", type=Path, help="device key (hex or base64), or a directory of <device_id>.key")
    p.add_argument("--device-id", type=int, help="device the key file belongs to (default: the header's)")
    p.add_argument("--prior-dir", type=Path, help="directory of <tokenizer>.prior.npy (default $TOKENCAST_PRIOR_DIR)")
    return parser


def read_fragments(data: bytes) -> tuple[str, list[bytes], list[str]]:
    """(container, fragments, problems). A capture is read like the serial link reads it: each
    complete frame that passes its CRC is a fragment; a corrupt frame, or bytes after the last
    delimiter (a capture cut short), is a problem and the rest is still shown. Bytes with no good
    frame at all are one raw fragment."""
    try:
        frames = split_frames(data)
        if frames:
            return "framed", frames, []
    except LinkError:
        pass
    chunks = data.split(b"\x00")
    good: list[bytes] = []
    problems: list[str] = []
    for i, chunk in enumerate(chunks[:-1]):
        if chunk:
            try:
                good.append(decode_frame(chunk))
            except FramingError as exc:
                problems.append(f"frame {i}: {exc}")
    if not good:
        return "raw", [data], []
    if chunks[-1]:
        problems.append(f"capture truncated: {len(chunks[-1])} bytes after the last frame delimiter "
                        f"(an incomplete frame) after {len(good)} complete fragments")
    return "framed", good, problems


def _priors(prior_dir: Path | None) -> dict[int, PriorCode]:
    out = {}
    for spec in TOKENIZERS.values():
        counts = load_prior(spec, prior_dir)
        if counts is not None:
            out[spec.id] = PriorCode.from_counts(spec, counts)
    return out


def inspect(data: bytes, *, key_file: Path | None = None, device_id: int | None = None,
            prior_dir: Path | None = None) -> dict[str, Any]:
    container, raw, problems = read_fragments(data)
    if container == "raw" and b"\x00" not in data:
        # COBS framing leaves no zero byte but the delimiter, and a raw fragment's header almost
        # always has one (device id, counter): this is a capture cut inside its first frame
        try:
            parse_any_header(data)
        except LinkError:
            raise MalformedPacket(f"capture truncated: {len(data)} bytes and no frame delimiter, so no complete "
                                  "fragment before the cut") from None
    headers = [parse_any_header(f) for f in raw]
    opener = None
    if key_file is not None:
        if key_file.is_dir():
            keys = KeyStore(directory=key_file)
        else:
            keys = KeyStore({device_id if device_id is not None else headers[0].device_id: load_key(key_file)})
        opener = Opener(keys, tag_len=headers[0].tag_len or 8, allow_unsealed=True)
    priors = _priors(prior_dir)
    can_open = opener is not None or all(h.tag_len == 0 for h in headers)
    report: dict[str, Any] = {"container": container, "fragments": [], "total_bytes": sum(map(len, raw)),
                              "problems": problems}
    decoded = []
    for frag, h in zip(raw, headers, strict=True):
        entry: dict[str, Any] = {**h.as_dict(), "bytes": len(frag)}
        breakdown: dict[str, Any] = {"header": h.size, "payload": len(frag) - h.size - h.tag_len, "tag": h.tag_len}
        if can_open:
            try:
                d = open_fragment(frag, opener, priors=priors)
            except LinkError as exc:  # one bad fragment of a capture: said, and the others still shown
                if len(raw) == 1:
                    raise
                entry["error"] = {"reason": exc.reason, "message": str(exc)}
                problems.append(f"fragment {len(report['fragments'])}: {exc.reason}: {exc}")
                report["fragments"].append(entry)
                continue
            decoded.append(d)
            entry["kept"] = int(d.kept.sum())
            breakdown.update(mask_bits=d.mask_bits, index_bits=d.index_bits,
                             padding_bits=8 * breakdown["payload"] - d.mask_bits - d.index_bits)
        else:
            entry["payload"] = "sealed (pass --key-file to decode)"
        entry["breakdown"] = breakdown
        report["fragments"].append(entry)
    if decoded and len({(d.header.device_id, d.header.counter) for d in decoded}) == 1:
        frame = assemble(decoded)
        report["frame"] = {
            "device_id": frame.device_id, "counter": frame.counter, "capture_ms": frame.capture_ms,
            "image": [frame.width, frame.height], "grid": [frame.grid_h, frame.grid_w],
            "kept": int(frame.kept.sum()), "lost_positions": int(frame.lost.sum()), "complete": frame.complete,
            "fragments_received": frame.fragments_received,
        }
        if frame.coarse is not None and frame.coarse_lost is not None:
            report["frame"]["coarse"] = {"grid": list(frame.coarse_lost.shape),
                                         "lost_cells": int(frame.coarse_lost.sum())}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on -h and on bad usage
        return int(exc.code or 0)
    try:
        data = args.file.read_bytes()
        report = inspect(data, key_file=args.key_file, device_id=args.device_id, prior_dir=args.prior_dir)
    except LinkError as exc:
        print(f"tokencast packet: {exc.reason}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"tokencast packet: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    if report["problems"]:  # what could be read is printed above; the exit status says it was not all
        more = f" (+{len(report['problems']) - 1} more in \"problems\")" if len(report["problems"]) > 1 else ""
        print(f"tokencast packet: malformed: {report['problems'][0]}{more}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
