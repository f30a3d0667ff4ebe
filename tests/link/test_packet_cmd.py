"""``tokencast packet inspect``: JSON for good input, one-line typed errors and exit 2 otherwise."""

from __future__ import annotations

import json

from link.framing import join_frames
from link.packet import pack
from link.security import Sealer
from tokencast.cli import main as cli_main
from tokencast.packet_cmd import main


def test_inspect_capture_with_key(tmp_path, golden_frame, golden_key, capsys):
    frags = pack(golden_frame, mtu=34, sealer=Sealer(golden_key, golden_frame.device_id, tag_len=4))
    cap = tmp_path / "frame.tcf"
    cap.write_bytes(join_frames(frags))
    key = tmp_path / "k.key"
    key.write_text(golden_key.hex())
    assert main(["inspect", str(cap), "--key-file", str(key)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["container"] == "framed" and len(report["fragments"]) == 2
    first = report["fragments"][0]
    assert first["device_id"] == golden_frame.device_id and first["breakdown"]["tag"] == 4
    assert first["breakdown"]["header"] == 26 and first["kept"] == 2
    assert report["frame"]["kept"] == 4 and report["frame"]["complete"] is True


def test_inspect_without_key_shows_clear_header(tmp_path, golden_frame, golden_key, capsys):
    frag = pack(golden_frame, mtu=255, sealer=Sealer(golden_key, golden_frame.device_id))[0]
    path = tmp_path / "one.bin"
    path.write_bytes(frag)
    assert cli_main(["packet", "inspect", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["container"] == "raw" and "sealed" in report["fragments"][0]["payload"]
    assert "frame" not in report


def test_errors_exit_2_with_one_line(tmp_path, golden_frame, capsys):
    bad = tmp_path / "bad.bin"
    for content in (b"", b"\x07" * 40, b"\x01\x00" + bytes(20)):
        bad.write_bytes(content)
        assert main(["inspect", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    frag = pack(golden_frame, mtu=255, sealer=Sealer(bytes(16), golden_frame.device_id))[0]
    bad.write_bytes(frag)
    wrong = tmp_path / "wrong.key"
    wrong.write_text((b"\x01" * 16).hex())
    assert main(["inspect", str(bad), "--key-file", str(wrong)]) == 2
    assert "auth" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.bin")]) == 2
    assert main(["bogus"]) == 2
