"""The DeepJSCC baseline: power normalisation, shapes, and a resumable few-second training run."""

from __future__ import annotations

import torch

from benchmarks.deepjscc import DeepJSCC, DeepJSCCConfig, load_deepjscc, power_normalize
from benchmarks.train_deepjscc import main


def test_power_normalize_gives_unit_symbol_power():
    z = power_normalize(torch.randn(3, 10, 4, 5) * 7)
    assert torch.allclose(z.flatten(1).pow(2).sum(1) / (z[0].numel() / 2), torch.ones(3), atol=1e-5)


def test_forward_shape_and_rate():
    m = DeepJSCC(DeepJSCCConfig(channels=4, width=8))
    y = m(torch.rand(2, 3, 32, 48), torch.tensor([0.0, 10.0]), "rayleigh")
    assert y.shape == (2, 3, 32, 48)
    assert m.config.channel_uses_per_pixel == 4 / 128


def test_training_saves_and_resumes(tiny_images, tmp_path):
    out, state = tmp_path / "deepjscc.safetensors", tmp_path / "state.pt"
    argv = ["--data", str(tiny_images), "--val", str(tiny_images), "--out", str(out), "--state", str(state),
            "--minutes", "0.02", "--width", "8", "--channels", "4", "--batch", "2", "--eval-images", "1"]
    assert main(argv) == 0
    assert main(argv) == 0  # resumes from the state file
    model = load_deepjscc(out)
    assert model.config.channels == 4
    assert (tmp_path / "deepjscc.md").read_text().startswith("# DeepJSCC")
