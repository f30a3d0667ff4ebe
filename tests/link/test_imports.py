"""link (and edge) must import without torch: cameras do not install it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

MODULES = [
    "link", "link.config", "link.errors", "link.tokenizers", "link.entropy", "link.frame", "link.header",
    "link.packet", "link.security", "link.reassembly", "link.framing", "link.lora", "link.channel", "link.ldpc",
    "link.transports", "link.transports.loopback", "link.transports.mqtt", "link.transports.serial",
    "tokencast.packet_cmd",
]


def test_link_imports_without_torch():
    modules = MODULES + (["edge"] if importlib.util.find_spec("edge") else [])
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n" \
           "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'sionna'))\n" \
           "assert not bad, bad\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
