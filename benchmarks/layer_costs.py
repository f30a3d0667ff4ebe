"""What each part of a wire v2 frame costs: coarse layer, block means, fine tokens, headers.

    python benchmarks/layer_costs.py --images DIR --out DIR [--size 768x512] [--bpp 0.074] [--mtu 222]

Runs the real edge selection (tokenizer v2, the shipped detector, byte-exact budget) on every
image resized to ``--size``, packs the frame as the edge does, and splits the bytes on the wire
by layer from the fragments themselves: payload and header+tag of the coarse fragments (with
the block means inside them, whose own bits are estimated from their code lengths), and of the
fine fragments, and bits per sent fine token including its share of fine headers and tags.
Writes ``DIR/layer_costs.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.report import fail, images_in, load_image, write_json

PROG = "layer_costs"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", default="768x512", help="WxH every image is resized to (default 768x512)")
    p.add_argument("--bpp", type=float, default=0.074)
    p.add_argument("--mtu", type=int, default=222)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--random-init", action="store_true", help="untrained weights (tests)")
    return p


def split(fragments: list[bytes]) -> dict[str, float]:
    from link import coding2, dc
    from link.header2 import LAYER_COARSE, parse_header2
    from link.packet2 import open_fragment2
    from link.tokenizers import get_tokenizer

    out = {"coarse_bytes": 0, "coarse_overhead_bytes": 0, "fine_bytes": 0, "fine_overhead_bytes": 0,
           "fine_tokens": 0, "coarse_fragments": 0, "fine_fragments": 0, "dc_bits_estimate": 0.0}
    for f in fragments:
        h = parse_header2(f)
        layer = "coarse" if h.layer == LAYER_COARSE else "fine"
        out[f"{layer}_bytes"] += len(f)
        out[f"{layer}_overhead_bytes"] += h.size + h.tag_len
        out[f"{layer}_fragments"] += 1
        if h.layer != LAYER_COARSE:
            out["fine_tokens"] += int(open_fragment2(f, None).kept.sum())
        elif h.dc:
            d = open_fragment2(f, None)
            spec = get_tokenizer(h.tokenizer_id)
            ch, cw = spec.coarse_grid(h.grid_h, h.grid_w)
            if d.dc_values is not None and d.dc_cells is not None:
                out["dc_bits_estimate"] += float(coding2.dc_bits(d.dc_values, d.dc_cells, dc.grid_for((ch, cw))[1]).sum())
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        return fail(PROG, f"--size must be WxH, got {args.size!r}")
    paths = images_in(args.images, args.limit)
    if not paths:
        return fail(PROG, f"no images in {args.images}")
    from PIL import Image

    from benchmarks import tokencast_link as tl
    from edge.sampler import BudgetConfig
    from link.frame import Frame
    from link.packet import pack

    codec = tl.load_codec(3, device=args.device, random_init=args.random_init)
    rows = []
    with tl.build_pipeline(codec, mtu=args.mtu) as pipe:
        for path in paths:
            im = np.asarray(Image.fromarray(load_image(path, 0)).resize((w, h), Image.Resampling.LANCZOS))
            sel = pipe.select(im, BudgetConfig("bpp", args.bpp))
            frame = Frame(1, 1, 0, w, h, 3, sel.grid_h, sel.grid_w, sel.kept, sel.indices, coarse=sel.coarse, dc=sel.dc)
            frags = pack(frame, mtu=args.mtu, sealer=None)
            row = {"image": path.name, "scale": sel.scale, "total_bytes": sum(map(len, frags)) + 8 * len(frags),
                   "kept_fraction": sel.kept_fraction, **split(frags)}
            tag = 8  # the edge seals with 8-byte tags; these fragments were packed unsealed to read them back
            row["coarse_bytes"] += tag * row["coarse_fragments"]
            row["coarse_overhead_bytes"] += tag * row["coarse_fragments"]
            row["fine_bytes"] += tag * row["fine_fragments"]
            row["fine_overhead_bytes"] += tag * row["fine_fragments"]
            n = max(row["fine_tokens"], 1)
            row["bits_per_fine_token"] = 8 * row["fine_bytes"] / n
            row["bits_per_fine_token_payload"] = 8 * (row["fine_bytes"] - row["fine_overhead_bytes"]) / n
            rows.append(row)
            print(f"{path.name}: coarse {row['coarse_bytes']} B (dc ~{row['dc_bits_estimate'] / 8:.0f} B), fine "
                  f"{row['fine_bytes']} B for {row['fine_tokens']} tokens = {row['bits_per_fine_token']:.1f} bits each",
                  file=sys.stderr)
    keys = ("total_bytes", "coarse_bytes", "coarse_overhead_bytes", "dc_bits_estimate", "fine_bytes", "fine_tokens",
            "kept_fraction", "bits_per_fine_token", "bits_per_fine_token_payload")
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    summary["dc_bytes_estimate"] = summary.pop("dc_bits_estimate") / 8
    write_json(args.out / "layer_costs.json", {"size": [w, h], "bpp": args.bpp, "mtu": args.mtu, "images": len(rows),
                                              "summary": summary, "rows": rows,
                                              "notes": ["byte counts include 8-byte AEAD tags, as the edge seals"]})
    print(" ".join(f"{k}={v:.1f}" for k, v in summary.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
