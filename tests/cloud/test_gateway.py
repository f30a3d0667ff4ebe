"""The gateway over a pseudo-terminal pair: good frames republished to a real Mosquitto, noise dropped."""

from __future__ import annotations

import os
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from cloudkit import DEVICES, Edge
from paho.mqtt.enums import CallbackAPIVersion

from cloud import cli as cloud_cli
from cloud import gateway_cli
from cloud.gateway import Gateway, GatewayConfig, MqttSink, UplinkBrokerConfig
from link.framing import encode_frame
from link.transports.config import SerialConfig
from link.transports.serial import SerialTransport


@pytest.mark.broker
def test_gateway_forwards_serial_fragments_to_mqtt_and_drops_corrupt_frames(mosquitto):
    got: list[tuple[str, bytes]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="observer", protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("tokencast/+/up", qos=1)
    sub.loop_start()
    assert subscribed.wait(10)

    master, slave = os.openpty()
    transport = SerialTransport(SerialConfig(url=os.ttyname(slave), baudrate=115200, pace=False))
    sink = MqttSink(UplinkBrokerConfig(port=mosquitto.port, client_id="gw-test"))
    gateway = Gateway(transport, sink)
    stop = threading.Event()
    thread = threading.Thread(target=gateway.run, args=(stop, 0.05))
    thread.start()
    try:
        frags = [f for d in DEVICES for f in Edge(d).fragments(1)]
        stream = b""
        for i, f in enumerate(frags):
            frame = encode_frame(f)
            if i % 4 == 1:  # a bit error the radio let through: CRC catches it
                bad = bytearray(frame)
                bad[3] ^= 0x40
                stream += bytes(bad)
            stream += frame
        stream += encode_frame(b"\x07not a fragment")  # good CRC, not a v1 fragment
        for k in range(0, len(stream), 37):  # the UART delivers arbitrary chunks
            os.write(master, stream[k : k + 37])
        deadline = time.monotonic() + 20
        while len(got) < len(frags) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(10)
        transport.close()
        sink.close()
        sub.loop_stop()
        os.close(master)
        os.close(slave)
    assert sorted(got) == sorted((f"tokencast/{int.from_bytes(f[2:6], 'big')}/up", f)
                                 for f in frags)
    n_bad = len(range(1, len(frags), 4))
    assert gateway.counts == {"forwarded": len(frags), "corrupt": n_bad, "malformed": 1}


def test_example_configs_load(tmp_path, capsys):
    from pathlib import Path

    root = Path(cloud_cli.__file__).parent
    assert gateway_cli.main(["--config", str(root / "gateway.example.toml"), "--check"]) == 0
    (tmp_path / "keys").mkdir()
    cfg = tmp_path / "cloud.toml"
    cfg.write_text((root / "cloud.example.toml").read_text())
    assert cloud_cli.main(["check-config", "--config", str(cfg)]) == 0
    assert "ok" in capsys.readouterr().out
    cfg.write_text("[batch]\nmax_bach = 3\n")
    assert cloud_cli.main(["check-config", "--config", str(cfg)]) == 2
    assert "batch.max_bach" in capsys.readouterr().err
    assert isinstance(GatewayConfig().serial, SerialConfig)
