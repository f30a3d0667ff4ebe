"""One small random-init build shared by the export tests (exporting is the slow part)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from export import build_engines

SIZE = "64x64"
NC = 3  # classes of the fake YOLO-seg graph


class FakeYoloSeg(nn.Module):
    """The YOLOv8/11-seg export contract in miniature: output0 [1, 4+nc+32, N], output1 protos."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.SiLU())
        self.protos = nn.Conv2d(16, 32, 1)
        self.box = nn.Conv2d(16, 4, 1)
        self.cls = nn.Conv2d(16, NC, 1)
        self.coef = nn.Conv2d(16, 32, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.stem(images)
        n, _, h, w = f.shape
        # head after the last Conv: Sigmoid/Mul/Add/Reshape/Concat, as the real decoding head
        box = (self.box(f).sigmoid() * 32 + 16).reshape(n, 4, h * w)
        cls = self.cls(f).sigmoid().reshape(n, NC, h * w)
        coef = self.coef(f).reshape(n, 32, h * w)
        return torch.cat([box, cls, coef], 1), self.protos(f)


@pytest.fixture(scope="session")
def fake_yolo(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("yolo") / "fake-seg.onnx"
    torch.onnx.export(FakeYoloSeg().eval(), (torch.rand(1, 3, 64, 64),), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["output0", "output1"])
    return path


@pytest.fixture(scope="session")
def built(tmp_path_factory, fake_yolo) -> tuple[Path, dict, list[str]]:
    """(out dir, manifest, argv) of a random-init build of every model at 64x64."""
    out = tmp_path_factory.mktemp("engines")
    argv = ["--out", str(out), "--random-init", "--input-size", SIZE, "--latency-runs", "1",
            "--segmenter-onnx", str(fake_yolo)]
    assert build_engines.main(argv) == 0
    return out, json.loads((out / "manifest.json").read_text()), argv
