"""10/30/50 % fragment loss: every frame still reconstructed and stored; PSNR falls with the loss.

A short run of ``benchmarks/loss_sweep.py`` (two real images from ``skimage.data``, 128x128,
one seed): the figure itself comes from the full script (``runs/reliability/loss_sweep.json``);
here only the structure and sanity are asserted: every frame stored, the lost share of the grid
tracks the dropped share of fragments, and quality at 50 % loss is below the loss-free one.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_every_frame_is_rebuilt_under_fragment_loss_and_quality_falls(tmp_path):
    import torch

    from benchmarks.loss_sweep import build_codec, load_images, sweep

    torch.manual_seed(0)
    torch.set_num_threads(1)
    codec, desc = build_codec(steps=2)
    images = load_images(("astronaut", "coffee"), 128)
    losses = [0.0, 0.1, 0.3, 0.5]
    result = sweep(codec, images, losses, seeds=1, mtu=51, workdir=tmp_path)
    rows, summary = result["rows"], result["summary"]
    print(f"\nloss sweep ({desc}): " + "; ".join(
        f"{s['fragment_loss']:.0%} fragments lost -> {s['lost_ratio']:.0%} of the grid, "
        f"PSNR {s['psnr_vs_original']:.1f} dB" for s in summary))
    assert len(rows) == len(images) * len(losses) and all(r["stored"] for r in rows)
    assert all(r["fragments_sent"] >= 8 for r in rows)  # enough fragments for the loss levels to mean something
    assert [s["loss"] for s in summary] == losses
    lost = [s["lost_ratio"] for s in summary]
    assert lost[0] == 0 and lost == sorted(lost) and abs(lost[-1] - 0.5) < 0.15
    assert summary[0]["psnr_vs_lossless"] == 100.0  # nothing lost: the stored picture is the loss-free one
    assert summary[-1]["psnr_vs_original"] < summary[0]["psnr_vs_original"]
    assert summary[-1]["psnr_vs_lossless"] < summary[1]["psnr_vs_lossless"] < 100.0
