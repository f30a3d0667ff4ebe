"""Every command the README and the design card name, run as a user runs it, with its defaults.

Each runs in a fresh working folder through its real entry point (``python -m tokencast.cli``,
``python export/build_engines.py``, ``python benchmarks/latency_power.py``), with the shipped
weights and, where a config is needed, the shipped example config with only what a machine must
change (paths, ports, the capture source). Inputs are small so the module stays near two
minutes on two cores: one demo image, 64x64 engines on a two-image calibration set, quick
latency runs. Each must exit 0, write its output files and print no traceback.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(16))


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2", TOKENCAST_CACHE_DIR=str(cwd / ".cache"))
    p = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p


def spawn(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(60)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    return rc


def example(path: str, replacements: list[tuple[str, str]]) -> str:
    """The shipped example config with only the named lines changed (each must exist)."""
    text = (ROOT / path).read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def write_key(path: Path) -> Path:
    path.write_text(KEY.hex())
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One working folder for the module, with two small photos (calibration, capture, latency)."""
    from skimage import data

    d = tmp_path_factory.mktemp("smoke")
    (d / "photos").mkdir()
    for name in ("astronaut", "coffee"):
        Image.fromarray(np.asarray(getattr(data, name)())).resize((128, 96)).save(d / "photos" / f"{name}.png")
    return d


@pytest.fixture(scope="module")
def demo(work: Path) -> Path:
    p = run(["-m", "tokencast.cli", "demo", "--limit", "1"], work)
    assert p.returncode == 0, p.stderr[-3000:]
    return work / "demo_out"


def test_demo(demo: Path):
    report = json.loads((demo / "report.json").read_text())
    (row,) = report["images"]
    assert row["received"] and row["psnr"] > 10 and report["failed"] == []
    assert (demo / "reconstructions" / "astronaut.png").is_file() and (demo / "packets" / "astronaut.bin").is_file()


def test_packet_inspect(demo: Path, work: Path):
    p = run(["-m", "tokencast.cli", "packet", "inspect", str(demo / "packets" / "astronaut.bin"),
             "--key-file", str(demo / "keys" / "1.key")], work)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["frame"]["complete"]


def test_models_eval(work: Path):
    p = run(["-m", "tokencast.cli", "models", "eval", "--limit", "1", "--max-side", "128", "--mask-ratios", "0.5"],
            work)
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads((work / "models_eval_out" / "models_eval.json").read_text())
    assert data["summary"]["images"] == 1 and data["summary"]["psnr_all_tokens"] > 15


@pytest.fixture(scope="module")
def engines(work: Path) -> Path:
    p = run(["export/build_engines.py", "--out", str(work / "engines"), "--input-size", "64x64",
             "--calib-images", str(work / "photos"), "--latency-runs", "1"], ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return work / "engines"


def test_build_engines(engines: Path):
    models = json.loads((engines / "manifest.json").read_text())["models"]
    for name in ("encoder", "encoder2", "encoder2fast", "scorer", "decoder", "maskgit"):
        for precision, e in models[name]["engines"].items():
            assert e["status"] in ("ok", "below_threshold", "skipped"), (name, precision, e)
            if e["status"] != "skipped":
                assert (engines / e["file"]).is_file()
        assert {"fp32", "fp16", "int8"} <= set(models[name]["engines"])
    assert models["maskgit"]["engines"]["fp32"]["status"] == "ok"  # the shipped restorer exports


def test_latency_power_each_precision(engines: Path, work: Path):
    out = work / "latency_out"
    p = run(["benchmarks/latency_power.py", "--engines", str(engines), "--images", str(work / "photos"),
             "--out", str(out), "--precision", "fp32", "fp16", "int8", "--quick", "--idle-seconds", "0"], ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = json.loads((out / "latency.json").read_text())["runs"]
    assert [(r["precision"], Path(r["encoder"]).name) for r in runs] == [
        (x, f"encoder2fast.{x}.onnx") for x in ("fp32", "fp16", "int8")]  # the edge's default encoder


def test_edge_run_once(work: Path):
    d = work / "edge"
    d.mkdir()
    write_key(d / "device.key")
    toml = example("edge/edge.example.toml", [
        ('key_file = "/run/credentials/tokencast-edge.service/device.key"', 'key_file = "device.key"'),
        ('source = "v4l2"', 'source = "images"'),
        ('[capture.images]         # a file or a folder (name order); for tests and benchmarks\npath = ""',
         f'[capture.images]\npath = "{work / "photos"}"'),
        ('encoder = "/opt/tokencast/models/tc-vq2-f16c-f8.fast-encoder.onnx"\n', ""),  # the shipped default
        ('type = "serial"', 'type = "loopback"'),
        ('path = "/var/lib/tokencast/outbox.sqlite"', 'path = "state/outbox.sqlite"'),
    ])
    (d / "edge.toml").write_text(toml)
    assert run(["-m", "tokencast.cli", "edge", "check-config", "--config", "edge.toml"], d).returncode == 0
    p = run(["-m", "tokencast.cli", "edge", "run", "--config", "edge.toml", "--once"], d)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "frame " in p.stderr and (d / "state" / "outbox.sqlite.counter").is_file()


@pytest.mark.broker
def test_cloud_serve_starts_and_stops(work: Path, mosquitto):
    d = work / "cloud"
    d.mkdir()
    (d / "keys").mkdir()
    write_key(d / "keys" / "1.key")
    (d / "cloud.toml").write_text(example("cloud/cloud.example.toml", [("port = 1883", f"port = {mosquitto.port}")]))
    assert run(["-m", "tokencast.cli", "cloud", "check-config", "--config", "cloud.toml"], d).returncode == 0
    log = d / "serve.log"
    proc = spawn(["-m", "tokencast.cli", "cloud", "serve", "--config", "cloud.toml"], d, log)
    try:
        wait_for(log, "consuming ", proc)
    finally:
        rc = stop(proc, log)
    assert rc == 0 and (d / "data" / "tokencast.db").is_file()


@pytest.mark.broker
def test_gateway_forwards_serial_frames_to_mqtt(work: Path, mosquitto, frame_factory):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from link.framing import join_frames
    from link.packet import pack
    from link.security import Sealer

    d = work / "gateway"
    d.mkdir()
    master, slave = pty.openpty()
    tty.setraw(master)
    (d / "gateway.toml").write_text(example("cloud/gateway.example.toml", [
        ('url = "/dev/ttyUSB0"', f'url = "{os.ttyname(slave)}"'), ("port = 1883", f"port = {mosquitto.port}")]))
    got: list[bytes] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="smoke-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("tokencast/+/up", qos=1)
    sub.loop_start()
    log = d / "gateway.log"
    proc = spawn(["-m", "tokencast.cli", "gateway", "--config", "gateway.toml"], d, log)
    try:
        wait_for(log, "gateway: ", proc)
        frags = pack(frame_factory(0, grid=(8, 8), device_id=1), mtu=200, sealer=Sealer(KEY, 1))
        os.write(master, join_frames(frags))
        deadline = time.monotonic() + 20
        while len(got) < len(frags) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        rc = stop(proc, log)
        sub.loop_stop()
        sub.disconnect()
        os.close(master)
        os.close(slave)
    assert rc == 0 and got == frags
