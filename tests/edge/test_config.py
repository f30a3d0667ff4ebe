"""Edge config: the example loads, every error names the file and the dotted key, CLI exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import EdgeConfig, load_edge_config
from link.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "edge" / "edge.example.toml"

MINIMAL = """
[device]
id = 5
key_file = "keys/5.key"
[capture]
source = "images"
[capture.images]
path = "cam"
[outbox]
path = "state/outbox.sqlite"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_example_loads():
    cfg = load_edge_config(EXAMPLE)
    assert isinstance(cfg, EdgeConfig) and cfg.device.id == 17 and cfg.transport.type == "serial"
    assert cfg.outbox.policy == "keep-semantic" and cfg.pipeline.packet.mtu == 222


def test_relative_paths_follow_the_config_file(tmp_path):
    cfg = load_edge_config(write(tmp_path, MINIMAL))
    assert cfg.device.key_file == tmp_path / "keys/5.key"
    assert cfg.outbox.path == tmp_path / "state/outbox.sqlite"
    assert cfg.capture.images.path == str(tmp_path / "cam")


@pytest.mark.parametrize(
    "patch, key, words",
    [
        (MINIMAL.replace("[outbox]", "[outbox]\nmax_frame = 3"), "outbox.max_frame", "unknown key"),
        (MINIMAL.replace("id = 5", "id = 'five'"), "device.id", "expected an integer"),
        (MINIMAL.replace("id = 5", "id = -1"), "device.id", "required"),
        (MINIMAL.replace('key_file = "keys/5.key"', ""), "device.key_file", "required"),
        (MINIMAL.replace('source = "images"', 'source = "webcam"'), "capture.source", "'v4l2'"),
        (MINIMAL.replace('path = "cam"', 'path = ""'), "capture.images.path", "required"),
        (MINIMAL + "[schedule]\nmode = 'motion'\nmin_fraction = 0.0\n", "schedule.min_fraction", "(0, 1]"),
        (MINIMAL.replace("[outbox]", "[outbox]\npolicy = 'newest'"), "outbox.policy", "keep-semantic"),
        (MINIMAL + "[transport]\ntype = 'mqtt'\n[transport.mqtt]\ndevice_id = 6\n", "transport.mqtt.device_id",
         "must equal device.id"),
        (MINIMAL + "[sender]\nbackoff_max_s = -1\n", "sender.backoff_max_s", ">= 0"),
        (MINIMAL + "[pipeline.budget]\nunit = 'bytes'\nvalue = -3.0\n", "pipeline.budget", "positive"),
    ],
)
def test_errors_name_file_and_key(tmp_path, patch, key, words):
    path = write(tmp_path, patch)
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    assert err.value.source == str(path) and err.value.key == key
    assert str(path) in str(err.value) and key in str(err.value) and words in str(err.value)


def test_cli_config_error_is_one_line_exit_2(tmp_path, capsys):
    path = write(tmp_path, MINIMAL.replace("[outbox]", "[outbox]\nmax_frame = 3"))
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "'outbox.max_frame'" in err[0]
    assert main(["check-config", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_check_config_reads_the_key(tmp_path, capsys):
    path = write(tmp_path, MINIMAL)
    assert main(["check-config", "--config", str(path)]) == 2
    assert "'device.key_file'" in capsys.readouterr().err
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "5.key").write_text("00" * 16)
    (tmp_path / "keys" / "5.key").chmod(0o600)
    assert main(["check-config", "--config", str(path)]) == 0
    assert "ok (device 5" in capsys.readouterr().out


def test_bad_toml_through_the_tokencast_command_has_no_traceback(tmp_path):
    path = write(tmp_path, "[device\nid = 5")
    proc = subprocess.run([sys.executable, "-m", "tokencast.cli", "edge", "run", "--config", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "not valid TOML" in proc.stderr and str(path) in proc.stderr
