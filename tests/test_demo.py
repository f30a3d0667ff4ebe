"""``tokencast demo`` end to end on small pictures with random-init models (never needs training).

Proves: the report has every field and honest numbers (bytes within the bpp budget, PSNR and
SSIM of the stored reconstruction), the packets are captures ``tokencast packet inspect``
decodes with the generated key, fragments lost on a fading channel come back as lost tokens
that the cloud regenerates, the serial and MQTT links carry the same bytes, and user errors
are one line and exit 2.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tokencast import demo, packet_cmd
from tokencast.samples import SAMPLE_SIZE, sample_images

H, W = 96, 128
FIELDS = ("name", "width", "height", "bytes", "bpp", "kept_ratio", "psnr", "ms_ssim", "fragments_sent",
          "fragments_lost", "encode_ms", "restore_ms")


@pytest.fixture(scope="module", autouse=True)
def demo_env(tmp_path_factory):
    """One encoder-export cache for the module; one torch thread (the CI box has two cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENCAST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield
    torch.set_num_threads(threads)


def write_images(folder: Path, h: int = H, w: int = W) -> Path:
    folder.mkdir()
    y, x = np.mgrid[:h, :w].astype(np.float32)
    for i, name in enumerate(("gradient", "rings")):
        r = np.hypot(y - h / 2, x - w / 2)
        rgb = np.stack([x * 256 / w + 40 * i, y * 256 / h, 127 + 120 * np.sin(r / (4 + 3 * i))], axis=-1)
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(folder / f"{name}.png")
    return folder


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_images(tmp_path / "images")


def run_demo(images: Path, out: Path, *extra: str) -> dict:
    assert demo.main(["--images", str(images), "--out", str(out), "--random-init", *extra]) == 0
    return json.loads((out / "report.json").read_text())


def test_demo_writes_report_reconstructions_and_inspectable_packets(images, tmp_path, capsys):
    out = tmp_path / "out"
    report = run_demo(images, out)
    rows = report["images"]
    assert [r["name"] for r in rows] == ["gradient", "rings"]
    budget = int(0.074 * W * H / 8)
    for r in rows:
        assert all(r[k] is not None for k in FIELDS), r
        assert (r["width"], r["height"]) == (W, H)
        assert 0 < r["bytes"] <= budget and r["bpp"] <= 0.074
        assert 0 < r["kept_ratio"] < 1 and r["fragments_lost"] == 0 and r["received"]
        assert r["psnr"] > 0 and -1 <= r["ms_ssim"] <= 1 and r["ms_ssim_method"].startswith("ssim")
        assert r["encode_ms"] > 0 and r["restore_ms"] > 0
        assert Image.open(out / "reconstructions" / f"{r['name']}.png").size == (W, H)
        side = Image.open(out / "side_by_side" / f"{r['name']}.png")
        assert side.width > 3 * W and side.height >= H

        capsys.readouterr()
        key = out / "keys" / "1.key"
        assert packet_cmd.main(["inspect", str(out / "packets" / f"{r['name']}.bin"), "--key-file", str(key)]) == 0
        inspected = json.loads(capsys.readouterr().out)
        assert inspected["container"] == "framed" and inspected["total_bytes"] == r["bytes"]
        assert len(inspected["fragments"]) == r["fragments_sent"]
        assert inspected["frame"]["image"] == [W, H] and inspected["frame"]["complete"]
        assert inspected["frame"]["kept"] == round(r["kept_ratio"] * (H // 8) * (W // 8))
    assert stat.S_IMODE(os.stat(out / "keys" / "1.key").st_mode) == 0o600
    summary = report["summary"]
    assert summary["images"] == 2 and summary["total_bytes"] == sum(r["bytes"] for r in rows)
    assert summary["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))

    from cloud.store.sqlite import SqliteStore  # the cloud's store kept the PSNR the demo measured

    with SqliteStore(out / "cloud" / "tokencast.db", out / "cloud" / "frames") as store:
        assert store.get_frame(1, 1).psnr == pytest.approx(rows[0]["psnr"])
    # a second run into the same folder starts afresh (new store, counters from 1)
    assert run_demo(images, out, "--limit", "1")["summary"]["received"] == 1
    assert sorted(p.name for p in (out / "packets").iterdir()) == ["gradient.bin"]


def test_fading_channel_loses_fragments_and_the_cloud_regenerates_their_tokens(tmp_path):
    # At 5 dB with block Rayleigh fading a 40-byte fragment survives only a few times in a hundred,
    # so the pictures are larger (768 tokens, ~60 fragments each) for some to get through; the
    # channel is seeded, so which ones do is the same on every run. Serial framing on the way.
    images = write_images(tmp_path / "images", 192, 256)
    report = run_demo(images, tmp_path / "out", "--link", "serial", "--channel", "rayleigh", "--snr", "5",
                      "--mtu", "40", "--budget-bpp", "1.0")
    rows = report["images"]
    assert report["summary"]["fragments_lost"] > 0
    assert all(r["fragments_delivered"] == r["fragments_sent"] - r["fragments_lost"] for r in rows)
    partial = [r for r in rows if r["received"] and r["fragments_lost"] > 0]
    assert partial, rows  # some fragments of a frame lost, the rest still made a picture
    for r in partial:
        assert 0 < r["lost_ratio"] < 1 and r["psnr"] is not None and r["ms_ssim_method"] == "ms-ssim"
        assert Image.open(r["reconstruction"]).size == (256, 192)
    for r in rows:
        assert Path(r["side_by_side"]).is_file()


@pytest.mark.broker
def test_demo_over_mqtt(images, tmp_path, mosquitto):
    report = run_demo(images, tmp_path / "out", "--link", f"mqtt://127.0.0.1:{mosquitto.port}", "--limit", "1")
    (row,) = report["images"]
    assert row["received"] and row["fragments_delivered"] == row["fragments_sent"] and row["psnr"] is not None


@pytest.mark.parametrize("args, message", [
    (["--budget-bpp", "-1"], "--budget-bpp must be positive"),
    (["--channel", "bogus"], "invalid choice"),
    (["--mtu", "x"], "--mtu must be a number"),
    (["--link", "carrier-pigeon"], "choose from loopback, serial, mqtt://HOST:PORT"),
    (["--link", "mqtt://127.0.0.1:99999"], "bad port"),
])
def test_bad_arguments_are_one_line_and_exit_2(images, tmp_path, capsys, args, message):
    assert demo.main(["--images", str(images), "--out", str(tmp_path / "o"), *args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tokencast demo:")]
    assert len(err) == 1 and message in err[0]


def test_missing_or_unreadable_images_are_one_line_and_exit_2(tmp_path, capsys, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert demo.main(["--images", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    assert demo.main(["--images", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err
    (empty / "broken.png").write_bytes(b"not a png")
    assert demo.main(["--images", str(empty), "--out", str(tmp_path / "o"), "--random-init"]) == 2
    err = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    err += [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("tokencast")]
    assert len(err) == 2 and err[0].startswith("broken: skipped: ") and "broken.png: cannot read image" in err[0]
    assert err[1].startswith("tokencast demo: nothing sent: 1 of 1 images skipped")
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["images"] == [] and report["summary"]["failed"] == ["broken"]


def test_bundled_samples_are_cropped_to_the_demo_size():
    (im,) = sample_images(limit=1)
    assert im.name == "astronaut" and im.rgb.shape == (SAMPLE_SIZE[1], SAMPLE_SIZE[0], 3)
    assert im.rgb.dtype == np.uint8 and im.rgb.std() > 10
