"""Leaving a shared group without stranding messages, against a real Mosquitto on loopback.

What the fault drill found: a worker that dies keeps its persistent session in the shared
group and Mosquitto keeps queueing its share there; a client id used twice makes two
connections take the session from each other; a publish nobody is subscribed to is PUBACKed
and dropped. Each test shows the broker doing it and the transport's answer.
"""

from __future__ import annotations

import time

import pytest

from link.transports.config import MqttConfig
from link.transports.mqtt import MqttConsumer, MqttPublisher, NoSubscriber

pytestmark = pytest.mark.broker


def cfg(broker, **kw) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=1, reconnect_max_s=2,
                      connect_timeout_s=10, publish_timeout_s=20, **kw)


def consumer(broker, client_id: str, **kw) -> MqttConsumer:
    return MqttConsumer(cfg(broker, role="consumer", client_id=client_id, group="g", max_inflight=100), **kw)


def drain(c: MqttConsumer, idle: float = 1.0) -> list[int]:
    got = []
    while (m := c.recv_message(timeout=idle)) is not None:
        got.append(int.from_bytes(m.payload, "big"))
        m.ack()
    return got


def crash(c: MqttConsumer) -> None:
    """Die like SIGKILL: the socket goes, no DISCONNECT, the persistent session stays."""
    c._closed = True
    c.client.loop_stop()
    if c.client.socket() is not None:
        c.client.socket().close()


def test_a_publish_nobody_receives_is_a_failed_send(mosquitto):
    with MqttPublisher(cfg(mosquitto, device_id=1, client_id="cam-1")) as pub:
        with pytest.raises(NoSubscriber, match="reason 16"):
            pub.send(b"lost?")  # no worker subscribed: the broker drops it, the outbox must keep it
        c = consumer(mosquitto, "w")
        try:
            pub.send(b"\x00\x07")
            assert drain(c) == [7]
        finally:
            c.close()
    with MqttPublisher(cfg(mosquitto, device_id=2, client_id="cam-2", require_subscriber=False)) as pub:
        pub.send(b"fire and forget")  # the old behaviour, on request


def test_a_dead_members_share_is_parked_until_its_session_is_adopted_and_ended(mosquitto):
    live, dead = consumer(mosquitto, "live"), consumer(mosquitto, "dead")
    crash(dead)
    time.sleep(1.0)  # the broker notices the socket is gone
    with MqttPublisher(cfg(mosquitto, device_id=1, client_id="cam")) as pub:
        for i in range(20):
            pub.send(i.to_bytes(2, "big"))
        first = drain(live)
        assert 0 < len(first) < 20  # the dead member still gets its share: the drill's half frames
        adopter = consumer(mosquitto, "dead", subscribe=False, reconnect=False)
        assert adopter.unsubscribe()
        parked = drain(adopter)
        adopter.close(end_session=True)
        assert sorted(first + parked) == list(range(20))
        for i in range(20, 40):
            pub.send(i.to_bytes(2, "big"))
        assert sorted(drain(live)) == list(range(20, 40))  # the ended session no longer takes a share
    live.close()


def test_leaving_cleanly_hands_everything_to_the_rest_of_the_group(mosquitto):
    stay, go = consumer(mosquitto, "stay"), consumer(mosquitto, "go")
    with MqttPublisher(cfg(mosquitto, device_id=1, client_id="cam")) as pub:
        for i in range(20):
            pub.send(i.to_bytes(2, "big"))
        assert go.unsubscribe()
        for i in range(20, 40):
            pub.send(i.to_bytes(2, "big"))
        left = drain(go)  # what it had been handed before the UNSUBACK
        go.close(end_session=True)
        for i in range(40, 60):
            pub.send(i.to_bytes(2, "big"))
        kept = drain(stay)
    stay.close()
    assert sorted(left + kept) == list(range(60)) and all(i < 20 for i in left)
    # the ended session is gone: reconnecting under its id finds nothing queued
    again = consumer(mosquitto, "go", subscribe=False, reconnect=False)
    assert drain(again, idle=0.5) == []
    again.close(end_session=True)


@pytest.mark.slow
def test_two_connections_with_one_client_id_are_reported_as_a_clash(mosquitto):
    a = consumer(mosquitto, "same")
    b = consumer(mosquitto, "same")
    try:
        deadline = time.monotonic() + 20
        while a.taken_over + b.taken_over == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert a.taken_over + b.taken_over >= 1
    finally:
        a.close()
        b.close()
