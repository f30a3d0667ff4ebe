"""sd_notify: messages reach an AF_UNIX datagram socket (path and abstract), no-op without systemd."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from edge.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def test_messages_on_a_path_socket(listener):
    path, sock = listener
    with Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}) as n:
        assert n.enabled and n.watchdog_interval == pytest.approx(1.0)
        assert n.ready("starting")
        assert n.status("queued 3\nsent 2")
        assert n.watchdog()
        assert n.stopping()
    got = [sock.recv(4096).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=starting", "STATUS=queued 3 sent 2", "WATCHDOG=1", "STOPPING=1"]


def test_abstract_namespace_socket():
    name = f"tokencast-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    try:
        with Notifier.from_env({"NOTIFY_SOCKET": "@" + name}) as n:
            n.ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_watchdog_pings_at_half_the_timeout(listener):
    path, sock = listener
    with Notifier(path, watchdog_usec=1_000_000) as n:  # 1 s watchdog: ping every 0.5 s
        assert n.ping_if_due()  # never pinged: due
        assert not n.ping_if_due()
        assert n.watchdog_due(now=n._last_ping + 0.51)
    assert sock.recv(100) == b"WATCHDOG=1"


def test_watchdog_for_another_pid_is_ignored():
    n = Notifier.from_env({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "30000000",
                           "WATCHDOG_PID": str(os.getpid() + 1)})
    assert n.watchdog_interval is None
    n.close()


def test_no_op_without_systemd():
    with Notifier.from_env({}) as n:
        assert not n.enabled
        assert not n.ready() and not n.ping_if_due() and not n.stopping()


def test_missing_manager_is_not_fatal(tmp_path, caplog):
    with Notifier(str(tmp_path / "gone.sock")) as n:
        assert not n.ready()
    assert "sd_notify 'READY' failed" in caplog.text
