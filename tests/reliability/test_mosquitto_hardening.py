"""The shipped broker hardening (deploy/mosquitto/) on a real Mosquitto: auth, ACL, TLS.

The test runs ``deploy/mosquitto/mosquitto.conf`` as shipped except for what a test must change:
file paths point into a temp folder, the two listeners (1883 plain, 8883 TLS) get free ports on
127.0.0.1, and the broker runs as the invoking user. Users come from the shipped
``make_users.sh`` (real ``mosquitto_passwd``); certificates from a throwaway CA made with
``cryptography``.
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.load_test import free_port, mosquitto_binary

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mosquitto"
HOST = "127.0.0.1"


def make_certs(d: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def write_key(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokencast test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(key, d / "server.key")


class HardenedBroker:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.plain, self.tls = tmp, free_port(), free_port()
        etc = tmp / "etc"
        make_certs(etc / "certs")
        if shutil.which("mosquitto_passwd") is None and not Path("/usr/bin/mosquitto_passwd").exists():
            pytest.skip("mosquitto_passwd not installed")
        subprocess.run(["bash", str(DEPLOY / "make_users.sh"), str(etc), "1", "2"], check=True, capture_output=True)
        conf = (DEPLOY / "mosquitto.conf").read_text()
        for old, new in [("/etc/mosquitto/tokencast/", f"{etc}/"), ("/var/lib/mosquitto/", f"{tmp}/"),
                         ("listener 1883 127.0.0.1", f"listener {self.plain} {HOST}"),
                         ("listener 8883\n", f"listener {self.tls} {HOST}\n")]:
            assert old in conf, old
            conf = conf.replace(old, new)
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(conf + f"user {getpass.getuser()}\n")
        self.secret = {u: (etc / "secrets" / f"{u}.password").read_text().strip()
                       for u in ("tokencast-worker", "tokencast-gateway", "cam-1", "cam-2")}
        self.ca = etc / "certs" / "ca.crt"
        self.log = tmp / "mosquitto.log"
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hardened mosquitto did not start:\n{self.log.read_text()[-2000:]}")
            try:
                for port in (self.plain, self.tls):
                    socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def broker(tmp_path):
    b = HardenedBroker(tmp_path)
    yield b
    b.stop()


class Client:
    """A paho v5 client that records its CONNACK, SUBACKs, PUBACKs and messages."""

    def __init__(self, name: str, port: int, user: str | None = None, password: str | None = None,
                 ca: Path | str | None = None) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        if user is not None:
            self.c.username_pw_set(user, password)
        if ca is not None:  # "system": the platform's CAs, which never signed the broker's certificate
            self.c.tls_set(ca_certs=None if ca == "system" else str(ca), cert_reqs=ssl.CERT_REQUIRED)
        self.connack = None
        self.connected = threading.Event()
        self.suback: list = []
        self.puback: dict[int, object] = {}
        self.got: list[tuple[str, bytes]] = []
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.suback.append(rcs)
        self.c.on_publish = lambda c, u, mid, rc, p: self.puback.__setitem__(mid, rc)
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.error: Exception | None = None
        try:
            self.c.connect(HOST, port)
            self.c.loop_start()
        except (OSError, ssl.SSLError) as exc:
            self.error = exc

    def _on_connect(self, c, u, flags, rc, props) -> None:
        self.connack = rc
        self.connected.set()

    def ok(self, timeout: float = 5) -> bool:
        if self.error is not None:
            return False
        self.connected.wait(timeout)
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str, payload: bytes, timeout: float = 5):
        info = self.c.publish(topic, payload, qos=1)
        deadline = time.monotonic() + timeout
        while info.mid not in self.puback and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.puback.get(info.mid)

    def subscribe(self, topic: str, timeout: float = 5):
        n = len(self.suback)
        self.c.subscribe(topic, qos=1)
        deadline = time.monotonic() + timeout
        while len(self.suback) == n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.suback[-1][0] if len(self.suback) > n else None

    def close(self) -> None:
        if self.error is None:
            self.c.disconnect()
            self.c.loop_stop()


def test_anonymous_and_wrong_password_are_refused_on_both_listeners(broker):
    for port, ca in ((broker.plain, None), (broker.tls, broker.ca)):
        anon = Client("anon", port, ca=ca)
        wrong = Client("wrong", port, "cam-1", "not-the-password", ca=ca)
        right = Client("right", port, "cam-1", broker.secret["cam-1"], ca=ca)
        try:
            assert not anon.ok() and not wrong.ok()
            assert anon.connack is None or anon.connack.is_failure
            assert right.ok()
        finally:
            for c in (anon, wrong, right):
                c.close()


def test_acl_devices_publish_only_their_own_topics_and_workers_only_read(broker):
    worker = Client("w1", broker.plain, "tokencast-worker", broker.secret["tokencast-worker"])
    cam1 = Client("tokencast-edge-1", broker.plain, "cam-1", broker.secret["cam-1"])
    cam2 = Client("tokencast-edge-2", broker.tls, "cam-2", broker.secret["cam-2"], ca=broker.ca)  # over TLS
    gateway = Client("gw", broker.plain, "tokencast-gateway", broker.secret["tokencast-gateway"])
    try:
        assert worker.ok() and cam1.ok() and cam2.ok() and gateway.ok()
        assert not worker.subscribe("$share/workers/tokencast/+/up").is_failure
        # Mosquitto grants a wildcard SUBACK and filters each message by the read ACL: checked below
        cam1.subscribe("tokencast/+/up")
        assert not cam1.publish("tokencast/1/up", b"cam1-own").is_failure
        assert not cam1.publish("tokencast/1/status", b"online").is_failure
        assert cam1.publish("tokencast/2/up", b"cam1-as-cam2").is_failure  # impersonation refused
        assert worker.publish("tokencast/1/up", b"worker-forged").is_failure  # workers only read
        assert not cam2.publish("tokencast/2/up", b"cam2-own-over-tls").is_failure
        assert not gateway.publish("tokencast/7/up", b"from-radio").is_failure
        deadline = time.monotonic() + 5
        while len(worker.got) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # a forged message, if it leaked, would arrive by now
        assert sorted(worker.got) == [("tokencast/1/up", b"cam1-own"), ("tokencast/2/up", b"cam2-own-over-tls"),
                                      ("tokencast/7/up", b"from-radio")]
        assert cam1.got == []  # a camera cannot read the fleet's uplink, not even its own
    finally:
        for c in (worker, cam1, cam2, gateway):
            c.close()


def test_tls_listener_needs_the_ca_and_plain_is_loopback_only(broker):
    untrusted = Client("untrusted", broker.tls, "cam-1", broker.secret["cam-1"], ca="system")
    try:
        assert not untrusted.ok(2)
    finally:
        untrusted.close()
    conf = (DEPLOY / "mosquitto.conf").read_text().splitlines()
    listeners = [line.split() for line in conf if line.startswith("listener ")]
    assert ["listener", "1883", "127.0.0.1"] in listeners and ["listener", "8883"] in listeners
    assert "allow_anonymous false" in conf and "per_listener_settings false" in conf
    assert any(line.startswith("cafile ") for line in conf) and any(line.startswith("max_packet_size") for line in conf)


def test_oversized_packets_are_refused(broker):
    cam1 = Client("big", broker.plain, "cam-1", broker.secret["cam-1"])
    worker = Client("w2", broker.plain, "tokencast-worker", broker.secret["tokencast-worker"])
    try:
        assert cam1.ok() and worker.ok()
        worker.subscribe("$share/workers/tokencast/+/up")
        cam1.publish("tokencast/1/up", bytes(100_000), timeout=2)
        time.sleep(0.5)
        assert worker.got == []
    finally:
        cam1.close()
        worker.close()
