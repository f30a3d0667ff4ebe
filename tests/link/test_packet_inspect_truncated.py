"""``tokencast packet inspect`` on a capture cut short: every complete fragment is shown, the cut
is named in one line, exit 2 (it used to misread the whole file as one fragment of "wire version 3")."""

from __future__ import annotations

import json

import numpy as np
import pytest

from link.frame import Frame
from link.framing import encode_frame, join_frames
from link.packet import pack
from link.security import Sealer
from tokencast import packet_cmd

KEY = bytes(range(16))


@pytest.fixture
def capture(tmp_path):
    kept = np.zeros((6, 8), bool)
    kept[::2] = True
    f = Frame.from_index_grid(np.arange(48).reshape(6, 8), kept, device_id=4, counter=7, capture_ms=1,
                              width=64, height=48, tokenizer_id=1)
    frags = pack(f, mtu=40, sealer=Sealer(KEY, 4, tag_len=8))
    assert len(frags) >= 3
    (tmp_path / "4.key").write_text(KEY.hex())
    return tmp_path, frags


@pytest.mark.parametrize("with_key", [True, False])
def test_truncated_capture_shows_the_complete_fragments(capture, capsys, with_key):
    folder, frags = capture
    data = join_frames(frags)
    cut = len(join_frames(frags[:2])) + len(encode_frame(frags[2])) // 2
    path = folder / "cut.bin"
    path.write_bytes(data[:cut])
    argv = ["inspect", str(path)] + (["--key-file", str(folder / "4.key")] if with_key else [])
    assert packet_cmd.main(argv) == 2
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["container"] == "framed" and len(report["fragments"]) == 2
    assert [f["counter"] for f in report["fragments"]] == [7, 7]
    assert err.strip().splitlines() == [
        f"tokencast packet: malformed: capture truncated: {cut - len(join_frames(frags[:2]))} bytes after the last "
        "frame delimiter (an incomplete frame) after 2 complete fragments"]
    if with_key:
        assert not report["frame"]["complete"] and report["frame"]["fragments_received"] == 2


def test_a_forged_fragment_in_a_capture_is_named_and_the_rest_decoded(capture, capsys):
    folder, frags = capture
    bad = bytearray(frags[1])
    bad[-1] ^= 1
    path = folder / "forged.bin"
    path.write_bytes(join_frames([frags[0], bytes(bad), *frags[2:]]))
    assert packet_cmd.main(["inspect", str(path), "--key-file", str(folder / "4.key")]) == 2
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["fragments"][1]["error"]["reason"] == "auth" and "kept" in report["fragments"][0]
    assert report["frame"]["fragments_received"] == len(frags) - 1
    assert err.strip().startswith("tokencast packet: malformed: fragment 1: auth: ")


def test_whole_capture_still_exit_0(capture, capsys):
    folder, frags = capture
    (folder / "ok.bin").write_bytes(join_frames(frags))
    assert packet_cmd.main(["inspect", str(folder / "ok.bin"), "--key-file", str(folder / "4.key")]) == 0
    assert json.loads(capsys.readouterr().out)["frame"]["complete"]


def test_capture_cut_inside_its_only_frame_says_truncated(capture, capsys):
    folder, frags = capture
    data = join_frames(frags[:1])
    (folder / "cut1.bin").write_bytes(data[: len(data) // 2])
    assert packet_cmd.main(["inspect", str(folder / "cut1.bin")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokencast packet: malformed: capture truncated: ") and "version" not in err
