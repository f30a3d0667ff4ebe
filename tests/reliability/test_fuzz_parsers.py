"""Fuzzing in CI for the config loaders the link tests do not cover, and a smoke run of the long fuzzer.

Covered elsewhere under hypothesis (not repeated): the packet decoder
(``tests/link/test_packet.py::test_fuzz_random_bytes``, ``::test_fuzz_mutated_fragments``,
``::test_fuzz_mutated_sealed``), the reassembler (``tests/link/test_reassembly.py::test_fuzz_reassembler``),
the serial deframer (``tests/link/test_framing.py::test_fuzz_garbage_never_raises``,
``::test_corruption_is_dropped_and_counted``) and the transport config
(``tests/link/test_transport_config.py::test_fuzz_config_loader``). Here: the cloud, edge and
gateway configs (tables built from their own key names, any TOML value, nested), TOML text
mutated from the shipped examples, and ``fuzz/run_fuzz.py`` on every target.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.config import CloudConfig
from cloud.gateway import GatewayConfig
from edge.config import EdgeConfig, load_edge_config
from link.config import ConfigError, from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fuzz"))
import run_fuzz  # noqa: E402

CLASSES = (CloudConfig, EdgeConfig, GatewayConfig)


def key_names(cls: type, seen: set | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    names = set()
    for f in dataclasses.fields(cls):
        names.add(f.name)
        for tp in (typing.get_type_hints(cls)[f.name], *typing.get_args(typing.get_type_hints(cls)[f.name])):
            if dataclasses.is_dataclass(tp) and tp not in seen:
                seen.add(tp)
                names |= key_names(tp, seen)
    return names


KEYS = st.sampled_from(sorted(set().union(*(key_names(c) for c in CLASSES)) | {"nope", ""}))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["mqtt", "serial", "loopback", "sqlite", "drop-oldest", "keep-semantic", "auto", "cpu", "worker",
                       "folder", "interval", "bytes", "seconds", "INFO", "/dev/null", "../x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
TABLES = st.dictionaries(KEYS, VALUES | st.dictionaries(KEYS, VALUES | st.dictionaries(KEYS, VALUES, max_size=3),
                                                        max_size=4), max_size=5)


@settings(max_examples=200)
@given(st.sampled_from(CLASSES), TABLES)
def test_fuzz_cloud_edge_gateway_config_loaders(cls, table):
    try:
        cfg = from_dict(cls, table, "fuzz.toml")
        if cls is EdgeConfig:
            cfg.problems()
    except ConfigError as exc:
        assert "fuzz.toml" in str(exc)


EXAMPLES = [ROOT / "cloud" / "cloud.example.toml", ROOT / "edge" / "edge.example.toml",
            ROOT / "cloud" / "gateway.example.toml"]


@settings(max_examples=150)
@given(st.sampled_from(EXAMPLES), st.integers(0, 10**6), st.binary(min_size=1, max_size=8))
def test_fuzz_mutated_example_files(tmp_path_factory, example, pos, junk):
    text = example.read_bytes()
    pos %= len(text)
    path = tmp_path_factory.mktemp("cfg") / example.name
    path.write_bytes(text[:pos] + junk + text[pos + len(junk):])
    for load in (lambda p: load_config(CloudConfig, p), load_edge_config, lambda p: load_config(GatewayConfig, p)):
        try:
            load(path)
        except ConfigError as exc:
            assert str(path) in str(exc)


def test_a_config_file_that_is_not_utf8_is_a_config_error_not_a_traceback(tmp_path):
    """Regression (found by test_fuzz_mutated_example_files): read_toml let UnicodeDecodeError escape."""
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\x80" + (ROOT / "cloud" / "cloud.example.toml").read_bytes())
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("target", "count"), [("packet", 3000), ("deframer", 2000), ("reassembler", 200),
                                               ("control", 3000), ("config", 60)])
def test_long_fuzzer_runs_every_target_and_reports_json(tmp_path, capsys, target, count):
    out = tmp_path / f"{target}.json"
    rc = run_fuzz.main(["--target", target, "--count", str(count), "--seed", "11", "--out", str(out)])
    result = json.loads(out.read_text())
    assert rc == 0, result["crash_samples"][:3]
    assert result["target"] == target and result["inputs"] == count and result["crashes"] == 0
