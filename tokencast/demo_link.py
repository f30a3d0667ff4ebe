"""The demo's link between its edge and its cloud: ``--link loopback | serial | mqtt://HOST:PORT``.

Each kind moves one frame's surviving fragments with ``transfer`` and returns what arrived,
each with the acknowledgement the worker calls once the fragment is staged (MQTT) or None.

* ``loopback``: the in-process queue pair of ``link.transports.loopback``.
* ``serial``: ``link.transports.serial`` over pyserial's ``loop://`` port, so every byte goes
  through COBS+CRC framing and the deframer as on a UART radio; pacing is off (a LoRa airtime
  simulation would make the demo take minutes), fragments are sent one at a time so the loop
  port's 4 KiB buffer never fills.
* ``mqtt://HOST:PORT``: a publisher and a shared-subscription consumer on a broker the user
  runs, under a topic prefix unique to this run, with short-lived sessions.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

from link.framing import max_encoded_len
from link.transports.config import MqttConfig, SerialConfig

Ack = Callable[[], None] | None
RECV_TIMEOUT_S = 5.0
MQTT_TIMEOUT_S = 15.0


class LinkSpecError(ValueError):
    """``--link`` names no known link; the message lists the valid forms."""


class DemoLink(abc.ABC):
    name = "link"

    @abc.abstractmethod
    def transfer(self, fragments: list[bytes]) -> list[tuple[bytes, Ack]]:
        """Send ``fragments`` edge -> cloud; what arrived, in arrival order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> DemoLink:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class PairLink(DemoLink):
    """Two ``link`` transports (or one that hears itself, like a serial loop), one fragment at a time."""

    def __init__(self, name: str, edge: object, cloud: object) -> None:
        self.name, self.edge, self.cloud = name, edge, cloud

    def transfer(self, fragments: list[bytes]) -> list[tuple[bytes, Ack]]:
        out: list[tuple[bytes, Ack]] = []
        for frag in fragments:
            self.edge.send(frag)  # type: ignore[attr-defined]
            got = self.cloud.recv(RECV_TIMEOUT_S)  # type: ignore[attr-defined]
            if got is not None:
                out.append((got, None))
        return out

    def close(self) -> None:
        for t in {id(self.edge): self.edge, id(self.cloud): self.cloud}.values():
            t.close()  # type: ignore[attr-defined]


class MqttLink(DemoLink):
    name = "mqtt"

    def __init__(self, host: str, port: int, device_id: int) -> None:
        from link.transports.mqtt import MqttConsumer, MqttPublisher

        run = f"{os.getpid()}-{os.urandom(3).hex()}"

        def config(**kw: object) -> MqttConfig:
            return MqttConfig(host=host, port=port, topic_prefix=f"tokencast-demo/{run}", session_expiry_s=60,
                              connect_timeout_s=5.0, publish_timeout_s=MQTT_TIMEOUT_S, **kw)  # type: ignore[arg-type]

        self.consumer = MqttConsumer(config(role="consumer", group=f"demo{run}",
                                            client_id=f"tokencast-demo-cloud-{run}"))
        try:
            self.publisher = MqttPublisher(config(role="publisher", device_id=device_id,
                                                  client_id=f"tokencast-demo-edge-{run}"))
        except BaseException:
            self.consumer.close()
            raise

    def transfer(self, fragments: list[bytes]) -> list[tuple[bytes, Ack]]:
        for frag in fragments:
            self.publisher.send(frag)
        out: list[tuple[bytes, Ack]] = []
        while len(out) < len(fragments):
            msg = self.consumer.recv_message(MQTT_TIMEOUT_S)
            if msg is None:
                break
            out.append((msg.payload, msg.ack))
        return out

    def close(self) -> None:
        try:
            self.publisher.close()
        finally:
            self.consumer.close()


def open_link(spec: str, *, mtu: int, device_id: int) -> DemoLink:
    if spec == "loopback":
        from link.transports.loopback import LoopbackLink

        edge, cloud = LoopbackLink().endpoints()
        return PairLink("loopback", edge, cloud)
    if spec == "serial":
        from link.transports.serial import SerialTransport

        loop = SerialTransport(SerialConfig(url="loop://", baudrate=115200, pace=False,
                                            mtu=max(8, max_encoded_len(mtu))))
        return PairLink("serial", loop, loop)
    if spec.startswith("mqtt://"):
        url = urlsplit(spec)
        try:
            broker_port = url.port or 1883
        except ValueError:
            raise LinkSpecError(f"--link {spec}: bad port") from None
        if not url.hostname or url.path not in ("", "/"):
            raise LinkSpecError(f"--link {spec}: expected mqtt://HOST:PORT")
        return MqttLink(url.hostname, broker_port, device_id)
    raise LinkSpecError(f"--link {spec!r}: choose from loopback, serial, mqtt://HOST:PORT")
