"""Quality against channel SNR: tokencast packets and classical files over a PHY, and DeepJSCC.

    python benchmarks/channel.py --images DIR --out DIR --channel awgn rayleigh
        --snr -2 0 4 8 12 16 [--bpp 0.074] [--modulation qpsk 16qam] [--fec ldpc] [--quick]

Digital schemes send fragments (sealed tokencast fragments; a classical file cut into MTU-sized
fragments with the same 8-byte tag plus a 4-byte sequence header) over ``benchmarks.phy``'s loss
model; a fragment whose check fails is lost.
  tokencast   the cloud restores the lost slices' tokens with the masked ones (MaskGIT).
  jpeg        decoded from the prefix before the first lost fragment, as a baseline JPEG decoder
              without restart markers does (Pillow's truncated-image decoding; the undecoded
              rest is grey); every fragment lost -> a mid-grey frame.
  others      (webp, avif, heic, jpeg2000) any lost fragment loses the file: mid-grey frame.
DeepJSCC (trained here, benchmarks/train_deepjscc.py) maps pixels straight to channel symbols.
The common axis is complex channel uses per pixel: bpp / (code rate x bits per symbol) for the
digital schemes, c/128 for DeepJSCC. Writes channel.json (config, notes, per-group means,
records) and channel.png (PSNR and ROI-PSNR against SNR, one row per channel).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile
from tqdm import tqdm

from benchmarks import classical
from benchmarks.phy import FEC_MODELS, LossModel, Phy, channel_uses_per_pixel
from benchmarks.quality import roi_mask
from benchmarks.report import fail, group_means, images_in, load_image, pyplot, write_json
from models.metrics import masked_psnr, psnr

PROG = "channel"
SEQ_HEADER = 4  # bytes: file id + fragment number for the classical files
TAG = 8
DEFAULT_DEEPJSCC = Path("benchmarks/checkpoints/deepjscc.safetensors")


def file_fragments(data: bytes, mtu: int) -> list[bytes]:
    """A classical file cut into fragments of at most ``mtu`` bytes, overhead included."""
    body = mtu - SEQ_HEADER - TAG
    return [bytes(SEQ_HEADER) + data[i : i + body] + bytes(TAG) for i in range(0, len(data), body)] or [bytes(mtu)]


def conceal(codec: str, data: bytes, fragments: list[bytes], lost: np.ndarray, width: int, height: int,
            scale: int) -> np.ndarray:
    """What a receiver shows for a classical file with ``lost`` fragments (see module doc)."""
    grey = np.full((height, width, 3), 128, np.uint8)
    if not lost.any():
        return classical._upsample(classical.decode(data), width, height)
    first = int(np.argmax(lost))
    if codec != "jpeg" or first == 0:
        return grey
    body = len(fragments[0]) - SEQ_HEADER - TAG
    prefix = data[: first * body]
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(io.BytesIO(prefix)) as im:
            out = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError):
        return grey
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old
    return classical._upsample(out, width, height)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--channel", nargs="+", default=["awgn", "rayleigh"], choices=["awgn", "rayleigh"])
    p.add_argument("--snr", type=float, nargs="+", default=[-2, 0, 4, 8, 12, 16], help="Es/N0 in dB")
    p.add_argument("--bpp", type=float, default=None, help="rate of the digital schemes (default 0.074; quick 0.12)")
    p.add_argument("--modulation", nargs="+", default=["qpsk", "16qam"], choices=["qpsk", "16qam"])
    p.add_argument("--fec", default="ldpc", choices=FEC_MODELS, help="ldpc falls back to analytic without sionna")
    p.add_argument("--code-rate", type=float, default=0.5)
    p.add_argument("--codecs", nargs="+", default=["jpeg", "webp", "avif", "jpeg2000"])
    p.add_argument("--trials", type=int, default=3, help="channel realisations per image and SNR")
    p.add_argument("--blocks", type=int, default=64, help="LDPC codewords per block-error-rate estimate")
    p.add_argument("--deepjscc", type=Path, default=DEFAULT_DEEPJSCC)
    p.add_argument("--mtu", type=int, default=222)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--max-side", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-init", action="store_true", help="untrained tokencast and DeepJSCC (tests)")
    p.add_argument("--tokenizer", type=int, choices=(1, 3), default=3,
                   help="3: coarse layer + fine tokens (wire v2, default); 1: fine tokens only (wire v1)")
    p.add_argument("--coarse-repeat", type=int, choices=(1, 2, 3), default=1,
                   help="send each coarse fragment this many times (wire v2; the budget pays for the copies)")
    return p


def loss_models(args: argparse.Namespace, notes: list[str]) -> dict[tuple[str, str, float], LossModel]:
    fec = args.fec
    if fec == "ldpc":
        try:
            import sionna.phy.fec.ldpc  # noqa: F401
        except ImportError:
            fec = "analytic"
            notes.append("sionna-no-rt not importable: 5G LDPC replaced by the analytic threshold model "
                         f"(Shannon limit of the rate + {__import__('benchmarks.phy').phy.LDPC_GAP_DB} dB gap).")
    models = {}
    combos = [(c, m, s) for c in args.channel for m in args.modulation for s in args.snr]
    for c, m, s in tqdm(combos, desc=f"PHY ({fec})", file=sys.stderr):
        models[(c, m, s)] = LossModel(Phy(c, s, m, fec, args.code_rate), args.mtu, args.blocks, args.seed)
    return models


def load_jscc(args: argparse.Namespace, notes: list[str]):  # noqa: ANN201 - DeepJSCC
    from benchmarks.deepjscc import DeepJSCC, load_deepjscc

    if not args.random_init and args.deepjscc.is_file():
        return load_deepjscc(args.deepjscc)
    notes.append(f"DeepJSCC untrained (random init): {'--random-init' if args.random_init else 'no ' + str(args.deepjscc)}.")
    return DeepJSCC().eval()


def plot(summary: list[dict], channels: list[str], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(len(channels), 2, figsize=(12, 4.2 * len(channels)), squeeze=False)
    for row, ch in zip(axes, channels, strict=True):
        rows = [r for r in summary if r["channel"] == ch]
        for key in sorted({(r["scheme"], r["modulation"]) for r in rows}):
            pts = sorted((r for r in rows if (r["scheme"], r["modulation"]) == key), key=lambda r: r["snr_db"])
            label = f"{key[0]} {key[1]} ({pts[0]['cpp']:.3f} cu/px)".replace(" -", "")
            for ax, field in zip(row, ("psnr", "roi_psnr"), strict=True):
                ax.plot([r["snr_db"] for r in pts], [r[field] for r in pts], "o-", label=label,
                        lw=2.2 if key[0] == "tokencast" else 1.2)
        for ax, name in zip(row, ("PSNR (dB)", "ROI-PSNR (dB)"), strict=True):
            ax.set_title(f"{ch}")
            ax.set_xlabel("SNR Es/N0 (dB)")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
        if not row[1].has_data():
            row[1].text(0.5, 0.5, "no objects found: no ROI", ha="center", transform=row[1].transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bpp = args.bpp or (0.12 if args.quick else 0.074)
    trials = 1 if args.quick else args.trials
    paths = images_in(args.images, args.limit)
    if not paths:
        return fail(PROG, f"no images in {args.images}")
    avail = classical.available_codecs()
    if missing := sorted(set(args.codecs) - set(avail)):
        return fail(PROG, f"codecs {missing} unavailable; choose from {sorted(avail)}")
    from benchmarks import tokencast_link as tl
    from benchmarks.deepjscc import transmit_image

    notes: list[str] = [
        "SNR is Es/N0 per complex symbol; Rayleigh is block fading per fragment (per image for DeepJSCC), "
        "receiver knows the coefficient.",
        "Classical concealment: jpeg decodes the prefix before the first lost fragment (no restart markers), "
        "other codecs lose the whole file on any lost fragment; a lost picture is shown mid-grey.",
        "tokencast: lost fragments' tokens are regenerated by the restorer with the masked ones.",
    ]
    losses = loss_models(args, notes)
    fec = next(iter(losses.values())).phy.fec if losses else args.fec
    if fec == "ldpc":
        notes.append(f"5G LDPC (sionna-no-rt), rate {args.code_rate}, block error rate of a {args.mtu}-byte fragment "
                     f"from {args.blocks} Monte-Carlo codewords per point; fragments lost independently with it.")
    codec = tl.load_codec(args.tokenizer, device=args.device, random_init=args.random_init)
    jscc = load_jscc(args, notes)
    jscc_cpp = jscc.config.channel_uses_per_pixel
    records: list[dict] = []
    with tl.build_pipeline(codec, mtu=args.mtu, coarse_repeat=args.coarse_repeat) as pipe:
        for path in tqdm(paths, desc=PROG, file=sys.stderr):
            im = load_image(path, args.max_side)
            h, w = im.shape[:2]
            roi = roi_mask(pipe.segmenter.segment(im), (h, w))
            sel = tl.select(pipe, im, bpp)
            sent = None
            if sel is not None:
                full = np.zeros(sel.kept.shape, np.int64)
                full[sel.kept] = sel.indices
                sent = tl.send(full, sel.kept, w, h, args.mtu, codec.tokenizer_id, sel.coarse, sel.dc)
                if args.coarse_repeat > 1:  # the copies ride after the fine fragments, paid from the budget
                    from edge.packer import repeat_coarse

                    sent.fragments += repeat_coarse(sent.fragments, args.coarse_repeat)
            files = {c: classical.at_rate(avail[c], im, bpp, 4 if args.quick else 8) for c in args.codecs}
            cache: dict[tuple, np.ndarray] = {}

            def rec(scheme: str, ch: str, mod: str, snr: float, trial: int, recon: np.ndarray, cpp: float,
                    n_bytes: int, n_frag: int, n_lost: int, ctx: tuple = (path.name, im, roi)) -> None:
                name, orig, mask = ctx
                hw = orig.shape[0] * orig.shape[1]
                records.append({"scheme": scheme, "channel": ch, "modulation": mod, "snr_db": snr, "trial": trial,
                                "image": name, "cpp": cpp, "bpp": 8 * n_bytes / hw, "fragments": n_frag,
                                "fragments_lost": n_lost, "psnr": psnr(orig, recon),
                                "roi_psnr": masked_psnr(orig, recon, mask)})

            for (ch, mod, snr), model in losses.items():
                for trial in range(trials):
                    seed = args.seed + 1000 * trial + int(round((snr + 100) * 10)) + 7  # >= 0 for SNRs above -100 dB
                    if sent is not None:
                        lost = model.lost(sent.fragments, seed)
                        key = ("tc", tuple(lost))
                        if key not in cache:
                            arrived = [f for f, g in zip(sent.fragments, lost, strict=True) if not g]
                            cache[key] = tl.receive(codec, arrived, sel.kept.shape, w, h, args.seed)[0]
                        rec("tokencast", ch, mod, snr, trial, cache[key],
                            channel_uses_per_pixel(8 * sent.size / (w * h), model.phy), sent.size,
                            len(sent.fragments), int(lost.sum()))
                    for cname, coded in files.items():
                        frags = file_fragments(coded.data, args.mtu)
                        lost = model.lost(frags, seed + 1)
                        key = (cname, tuple(lost))
                        if key not in cache:
                            cache[key] = conceal(cname, coded.data, frags, lost, w, h, coded.scale)
                        n_bytes = sum(map(len, frags))
                        rec(cname, ch, mod, snr, trial, cache[key],
                            channel_uses_per_pixel(8 * n_bytes / (w * h), model.phy), n_bytes, len(frags),
                            int(lost.sum()))
            for ch in args.channel:
                for snr in args.snr:
                    for trial in range(trials):
                        out = transmit_image(jscc, im, snr, ch, seed=args.seed + trial)
                        rec("deepjscc", ch, "-", snr, trial, out, jscc_cpp, 0, 0, 0)
    summary = group_means(records, ("scheme", "channel", "modulation", "snr_db"),
                          ("psnr", "roi_psnr", "cpp", "bpp", "fragments", "fragments_lost"))
    args.out.mkdir(parents=True, exist_ok=True)
    config = {"bpp": bpp, "channels": args.channel, "snr_db": args.snr, "modulations": args.modulation,
              "fec": fec, "code_rate": args.code_rate, "mtu": args.mtu, "trials": trials,
              "codecs": args.codecs, "images": len(paths), "random_init": args.random_init,
              "deepjscc_channel_uses_per_pixel": jscc_cpp,
              "block_error_rate": [{"channel": c, "modulation": m, "snr_db": s, "bler": lm.bler}
                                   for (c, m, s), lm in losses.items() if lm.bler is not None]}
    write_json(args.out / "channel.json", {"config": config, "notes": notes, "summary": summary, "records": records})
    plot(summary, args.channel, args.out / "channel.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
