"""The workers' session registry: client-id clashes refused at start-up, dead sessions adopted once.

Unit level on a real store (SQLite here; the registry's store methods run on both backends in
test_store.py); the broker side of adoption and leaving is in tests/link/test_mqtt_sessions.py
and end to end in test_scaleout.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cloud.config import BrokerConfig, StoreConfig
from cloud.sessions import ClientIdClash, SessionKeeper
from cloud.store import SessionRecord, make_store


@pytest.fixture
def store(tmp_path):
    s = make_store(StoreConfig(path=tmp_path / "db.sqlite", image_dir=tmp_path / "frames"))
    yield s
    s.close()


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_live_holder_of_the_client_id_is_a_clash_named_at_start_up(store):
    now = 1000.0
    first = SessionKeeper(store, "cloud-x", "worker-a", clock=lambda: now)
    first.register()
    second = SessionKeeper(store, "cloud-x", "worker-b", clock=lambda: now + 1)
    with pytest.raises(ClientIdClash, match=rf"'cloud-x' is held by worker worker-a .* pid {os.getpid()}"):
        second.register()
    assert store.get_session("cloud-x").owner == "worker-a"  # the holder keeps it
    # another host with a fresh heartbeat: cannot check its pid, so a clash too
    store.put_session(SessionRecord("cloud-y", "worker-c", "other-host", 1, now))
    with pytest.raises(ClientIdClash, match="other-host"):
        SessionKeeper(store, "cloud-y", "worker-d", clock=lambda: now + 1).register()


def test_a_dead_or_silent_holder_is_no_clash(store):
    now = 1000.0
    me = SessionKeeper(store, "cloud-x", "worker-b", clock=lambda: now)
    store.put_session(SessionRecord("cloud-x", "worker-a", me.host, dead_pid(), now - 1))  # same host, pid gone
    me.register()
    assert store.get_session("cloud-x").owner == "worker-b"
    store.put_session(SessionRecord("cloud-y", "worker-c", "other-host", 1, now - 60))  # silent past adopt_after_s
    SessionKeeper(store, "cloud-y", "worker-d", clock=lambda: now, adopt_after_s=20).register()
    # the same worker id (a restart with a configured worker_id) is never a clash
    store.put_session(SessionRecord("cloud-z", "worker-e", "other-host", 1, now))
    SessionKeeper(store, "cloud-z", "worker-e", clock=lambda: now).register()


def test_tick_adopts_each_dead_session_once_and_retries_a_failed_adoption(store):
    t = [1000.0]
    calls: list[str] = []
    outcome = [False]

    def adopt(rec: SessionRecord) -> bool:
        calls.append(rec.client_id)
        return outcome[0]

    live = SessionKeeper(store, "cloud-live", "live", heartbeat_s=1, adopt_after_s=10, adopt=adopt,
                         clock=lambda: t[0])
    live.register()
    store.put_session(SessionRecord("cloud-dead", "dead", "h", 1, 995.0))
    live.tick()
    assert calls == []  # 5 s silent: not yet
    t[0] = 1006.0
    live.tick()
    assert calls == ["cloud-dead"] and store.get_session("cloud-dead").adopted  # failed: the row stays
    t[0] = 1010.0
    live.tick()
    assert calls == ["cloud-dead"]  # adoption time counts as a heartbeat: not retried at once
    outcome[0] = True
    t[0] = 1017.0
    live.tick()
    assert calls == ["cloud-dead", "cloud-dead"] and store.get_session("cloud-dead") is None
    assert live.adopted == ["cloud-dead"] and store.get_session("cloud-live").heartbeat == 1017.0


def test_default_client_ids_are_unique_per_process():
    here = BrokerConfig().effective_client_id()
    other = subprocess.run([sys.executable, "-c", "from cloud.config import BrokerConfig; "
                            "print(BrokerConfig().effective_client_id())"], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert here.endswith(f"-{os.getpid()}") and other != here and other.startswith("tokencast-cloud-")
    assert BrokerConfig(client_id="fixed").effective_client_id() == "fixed"
    with pytest.raises(ValueError, match="at least 3 heartbeats"):
        BrokerConfig(heartbeat_s=5, adopt_after_s=10)
