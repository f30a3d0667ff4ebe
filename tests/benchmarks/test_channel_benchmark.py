"""channel.py end to end (uncoded PHY, untrained models), and its PHY helpers."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.channel import file_fragments, main
from benchmarks.phy import Phy, analytic_bler, bit_llrs, channel_uses_per_pixel
from link.channel import modulate


def test_quick_run_writes_json_and_plot(tiny_images, tmp_path):
    out = tmp_path / "ch"
    assert main(["--images", str(tiny_images), "--out", str(out), "--quick", "--random-init", "--fec", "uncoded",
                 "--snr", "0", "14", "--modulation", "qpsk", "--codecs", "jpeg"]) == 0
    data = json.loads((out / "channel.json").read_text())
    assert (out / "channel.png").stat().st_size > 0
    assert {"config", "notes", "summary", "records"} <= set(data)
    schemes = {r["scheme"] for r in data["summary"]}
    assert {"tokencast", "jpeg", "deepjscc"} <= schemes
    for r in data["records"]:
        assert {"scheme", "channel", "snr_db", "cpp", "psnr", "roi_psnr"} <= set(r)
        assert r["cpp"] > 0


def test_llr_signs_follow_the_bits():
    bits = np.random.default_rng(0).integers(0, 2, 400).astype(np.uint8)
    for mod in ("qpsk", "16qam"):
        llr = bit_llrs(modulate(bits, mod), np.full(400 // (2 if mod == "qpsk" else 4), 0.01), mod)
        assert np.array_equal((llr > 0).astype(np.uint8), bits)


def test_channel_uses_and_threshold_model():
    assert channel_uses_per_pixel(0.1, Phy("awgn", 0, "qpsk", "ldpc", 0.5)) == 0.1
    assert channel_uses_per_pixel(0.1, Phy("awgn", 0, "16qam", "uncoded")) == 0.025
    rng = np.random.default_rng(0)
    assert analytic_bler(Phy("awgn", 10, "qpsk", "analytic"), rng) == 0.0
    assert analytic_bler(Phy("awgn", -5, "qpsk", "analytic"), rng) == 1.0


def test_file_fragments_respect_the_mtu():
    frags = file_fragments(bytes(1000), 222)
    assert all(len(f) <= 222 for f in frags) and sum(len(f) - 12 for f in frags) == 1000
