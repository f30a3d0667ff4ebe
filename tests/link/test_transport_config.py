"""Transport configuration through link.config: TOML in, typed dataclasses out, typos named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from link.config import ConfigError, from_dict, load_config
from link.transports import TransportConfig, make_transport


def test_load_toml(tmp_path):
    path = tmp_path / "link.toml"
    path.write_text('type = "mqtt"\n[mqtt]\nrole = "consumer"\nhost = "broker"\nport = 8883\ntls = true\n'
                    'ca_file = "/etc/ca.pem"\ngroup = "decoders"\n')
    cfg = load_config(TransportConfig, path)
    assert cfg.type == "mqtt" and cfg.mqtt.port == 8883 and str(cfg.mqtt.ca_file) == "/etc/ca.pem"
    assert cfg.mqtt.shared_subscription() == "$share/decoders/tokencast/+/up"


@pytest.mark.parametrize(
    ("data", "key"),
    [({"type": "carrier-pigeon"}, "type"), ({"mqtt": {"prot": 1}}, "mqtt.prot"), ({"serial": {"baudrate": "x"}},
     "serial.baudrate"), ({"mqtt": {"port": 0}}, "mqtt"), ({"mqtt": {"group": "a/b"}}, "mqtt")],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        from_dict(TransportConfig, data, "link.toml")
    assert err.value.key == key and "link.toml" in str(err.value)


def test_loopback_registry():
    cfg = TransportConfig(type="loopback")
    cfg.loopback.channel = "test-registry"
    edge = make_transport(cfg)
    cfg.loopback.side = "cloud"
    with make_transport(cfg) as cloud:
        edge.send(b"abc")
        assert cloud.recv(timeout=1) == b"abc"
        assert cloud.recv(timeout=0) is None


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
known_keys = st.sampled_from(["type", "loopback", "mqtt", "serial", "port", "host", "role", "channel", "side",
                              "baudrate", "url", "pace", "sf", "tls", "group", "password_file", "ca_file"])


@settings(max_examples=600)
@given(st.dictionaries(known_keys, toml_values | st.dictionaries(known_keys, toml_values, max_size=4), max_size=4))
def test_fuzz_config_loader(data):
    try:
        from_dict(TransportConfig, data, "fuzz.toml")
    except ConfigError as exc:
        assert "fuzz.toml" in str(exc)
