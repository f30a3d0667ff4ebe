"""Picture quality against fragment loss: real images through pack -> loss -> the worker -> the store.

    python -m benchmarks.loss_sweep --size 256 --seeds 3 --out runs/loss_sweep.json

Each image (``skimage.data``: astronaut, coffee, chelsea, rocket, ...) is centre-cropped and
resized to ``--size``, encoded by the codec, sent with every token kept (so the only damage is
the loss), packed and sealed at ``--mtu``; a seeded fraction of its fragments is dropped and the
rest go through a real ``cloud.worker.Worker`` with a temporary SQLite store, which restores the
partial frame (lost slices regenerated) and stores it. PSNR is measured on the stored PNG against
the original (``psnr_vs_original``) and against the loss-free reconstruction
(``psnr_vs_lossless``: what the loss alone costs).

The codec is the shipped one where its files exist: the tokenizer from
``models/checkpoints/tokenizer_f8_k1024.safetensors`` and the MaskGIT from
``maskgit_f8_k1024.safetensors``; each part that is missing is random-init, and the JSON says
which (with a random-init MaskGIT the regenerated tokens are noise, so the curve shows the
worst case). Writes JSON and, with matplotlib, a PNG plot beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from link.frame import Frame
from link.packet import pack
from link.security import Sealer

DEVICE = 1
KEY = bytes(range(16))
IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")
CAP_DB = 100.0  # identical pictures: PSNR reported as this, not infinity


def build_codec(steps: int = 4, device: str = "cpu"):
    """(codec, description): shipped parts where present, random-init for the rest."""
    from models.codec import TokenCodec, load_maskgit, load_tokenizer
    from models.registry import files_for
    from models.restore import RestoreConfig, Restorer

    files = files_for(1)
    have_tok, have_mg = files.path("tokenizer").exists(), files.path("maskgit").exists()
    tok = load_tokenizer(1, device, random_init=not have_tok)
    mg = load_maskgit(1, device, random_init=not have_mg)
    codec = TokenCodec(tok, Restorer(mg, RestoreConfig(steps=steps), device), 1)
    return codec, {"tokenizer": "shipped" if have_tok else "random-init", "maskgit": "shipped" if have_mg else "random-init",
                   "restore_steps": steps}


def load_images(names: tuple[str, ...], size: int) -> dict[str, np.ndarray]:
    import skimage.data
    from PIL import Image

    out = {}
    for name in names:
        im = np.asarray(getattr(skimage.data, name)())
        if im.ndim == 2:
            im = np.stack([im] * 3, axis=-1)
        im = im[..., :3].astype(np.uint8)
        h, w = im.shape[:2]
        s = min(h, w)
        crop = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out[name] = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return CAP_DB if mse == 0 else min(CAP_DB, 10 * np.log10(255.0**2 / mse))


def sweep(codec, images: dict[str, np.ndarray], losses: list[float], seeds: int, mtu: int,
          workdir: Path) -> dict[str, object]:
    from PIL import Image

    from cloud.config import CloudConfig
    from cloud.store import make_store
    from cloud.worker import Worker
    from link.security import KeyStore

    cfg = CloudConfig(source="none", worker_id="loss-sweep")
    cfg.store.path, cfg.store.image_dir = workdir / "store.db", workdir / "frames"
    cfg.reassembly.timeout_s = 3600.0
    cfg.metrics.enabled = cfg.dashboard.enabled = False
    store = make_store(cfg.store)
    worker = Worker(cfg, store, {1: codec}, keys=KeyStore({DEVICE: KEY}))
    sealer = Sealer(KEY, DEVICE)
    rows = []
    counter = 0
    try:
        for name, img in images.items():
            tokens = codec.encode([img])[0]
            gh, gw = tokens.shape
            lossless = codec.decode([tokens], [img.shape[:2]])[0]
            for loss in losses:
                for seed in range(seeds):
                    counter += 1
                    frame = Frame.from_index_grid(tokens, np.ones_like(tokens, dtype=bool), device_id=DEVICE,
                                                  counter=counter, capture_ms=counter, width=img.shape[1],
                                                  height=img.shape[0], tokenizer_id=1)
                    frags = pack(frame, mtu=mtu, sealer=sealer)
                    rng = np.random.default_rng(1000 * seed + int(loss * 100))
                    n_drop = min(len(frags) - 1, round(loss * len(frags)))  # a frame with no fragment is not a frame
                    dropped = set(rng.choice(len(frags), n_drop, replace=False).tolist())
                    for i, f in enumerate(frags):
                        if i not in dropped:
                            worker.submit(f)
                    stored = worker.drain()
                    rec = store.get_frame(DEVICE, counter)
                    got = np.asarray(Image.open(store.frame_paths(DEVICE, counter).image).convert("RGB")) if rec else None
                    rows.append({
                        "image": name, "loss": loss, "seed": seed, "grid": [gh, gw],
                        "fragments_sent": len(frags), "fragments_received": len(frags) - n_drop,
                        "stored": len(stored) == 1 and rec is not None,
                        "lost_ratio": None if rec is None else round(rec.lost_ratio, 4),
                        "psnr_vs_original": None if got is None else round(psnr(got, img), 3),
                        "psnr_vs_lossless": None if got is None else round(psnr(got, lossless), 3),
                    })
    finally:
        store.close()
    summary = []
    for loss in losses:
        rs = [r for r in rows if r["loss"] == loss]
        ok = [r for r in rs if r["stored"]]
        summary.append({
            "loss": loss, "frames": len(rs), "stored": len(ok),
            "fragment_loss": round(float(np.mean([1 - r["fragments_received"] / r["fragments_sent"] for r in rs])), 4),
            "lost_ratio": round(float(np.mean([r["lost_ratio"] for r in ok])), 4),
            "psnr_vs_original": round(float(np.mean([r["psnr_vs_original"] for r in ok])), 3),
            "psnr_vs_lossless": round(float(np.mean([r["psnr_vs_lossless"] for r in ok])), 3),
        })
    return {"rows": rows, "summary": summary}


def plot(result: dict[str, object], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    s = result["summary"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = [100 * r["fragment_loss"] for r in s]  # type: ignore[index]
    ax.plot(x, [r["psnr_vs_original"] for r in s], "o-", label="vs original")  # type: ignore[index]
    ax.plot(x, [min(r["psnr_vs_lossless"], 60) for r in s], "s--", label="vs loss-free (capped 60)")  # type: ignore[index]
    ax.set_xlabel("fragments lost (%)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"tokencast: PSNR vs fragment loss ({result['codec']['maskgit']} MaskGIT)")  # type: ignore[index]
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="PSNR vs fragment loss through the real worker")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (a multiple of 8)")
    p.add_argument("--images", default=",".join(IMAGES), help="skimage.data names, comma separated")
    p.add_argument("--losses", default="0,0.1,0.2,0.3,0.4,0.5")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--mtu", type=int, default=51)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("runs/loss_sweep.json"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.manual_seed(0)
    codec, desc = build_codec(args.steps)
    images = load_images(tuple(n for n in args.images.split(",") if n), args.size)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tokencast-loss-") as tmp:
        result = sweep(codec, images, [float(x) for x in args.losses.split(",")], args.seeds, args.mtu, Path(tmp))
    result = {"codec": desc, "size": args.size, "mtu": args.mtu, "seeds": args.seeds, "images": list(images),
              "seconds": round(time.monotonic() - t0, 1), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plotted = plot(result, args.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"} | {"plot": plotted}, indent=1))
    return 0 if all(r["stored"] for r in result["rows"]) else 1  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())
