"""Write the fine codebook the edge measures token motion with: unit-normalised, float32, (K, D).

    python scripts/export_codebook.py [--weights models/checkpoints/tokenizer2_f16c_f8.safetensors]

The edge must not import torch, so the codebook ships as a small .npy beside the encoder
(``edge.codebook.DEFAULT_CODEBOOK``). Tokenizer v2's fine codebook is v1's (fine ids are shared),
so one file serves tokenizer ids 1 and 3; the script refuses to write a different one silently.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=ROOT / "models/checkpoints/tokenizer2_f16c_f8.safetensors")
    p.add_argument("--out", type=Path, default=ROOT / "models/checkpoints/tc-vq-f8-k1024.codebook.npy")
    args = p.parse_args(argv)
    from models.checkpoints import load_weights

    state, _ = load_weights(args.weights)
    if "quantizer.codebook" not in state:
        print(f"export_codebook: {args.weights} has no quantizer.codebook", file=sys.stderr)
        return 2
    cb = state["quantizer.codebook"].float().numpy()
    cb = (cb / np.maximum(np.linalg.norm(cb, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    np.save(args.out, cb, allow_pickle=False)
    print(f"{args.out}: {cb.shape[0]} x {cb.shape[1]} unit codes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
