"""``tokencast cloud serve|check-config``: run the decoder worker (and the dashboard), or vet a config.

``serve`` wires the parts the config names: the store backend, one codec per tokenizer id, the
MQTT consumer (shared subscription, manual acks), the metrics endpoint, and the dashboard when
the ``cloud.dashboard`` package exists and is enabled (imported lazily, so the worker runs
without it). SIGTERM or SIGINT sets one stop event; the batch in progress finishes and is
stored, unacknowledged messages stay with the broker.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cloud import config as cloud_config
from link.config import ConfigError
from link.errors import LinkError
from link.tokenizers import get_tokenizer

if TYPE_CHECKING:
    from cloud.downlink import ControlSender, Publish
    from cloud.metrics import Metrics
    from cloud.worker import Worker

log = logging.getLogger("tokencast.cloud")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokencast cloud", description="decoder worker and dashboard")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="consume fragments, restore, store, serve metrics and the dashboard")
    serve.add_argument("--config", type=Path, required=True,
                       help="cloud TOML file (see cloud/cloud.example.toml; relative paths are taken from its folder)")
    serve.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                       help="log verbosity (default INFO)")
    check = sub.add_parser("check-config", help="load and validate a cloud.toml")
    check.add_argument("--config", type=Path, required=True, help="cloud TOML file to check")
    return p


def check(cfg: cloud_config.CloudConfig) -> list[str]:
    """Problems that would stop ``serve``, found without loading models or connecting."""
    problems = []
    if not cfg.security.keys_dir.is_dir():
        problems.append(f"security.keys_dir {cfg.security.keys_dir} is not a folder")
    for tid in cfg.model.tokenizer_ids:
        try:
            get_tokenizer(tid)
        except LinkError as exc:
            problems.append(f"model.tokenizer_ids: {exc}")
    from cloud.store import BACKENDS

    if cfg.store.type not in BACKENDS:
        problems.append(f"store.type {cfg.store.type!r} unknown; choose from {', '.join(BACKENDS)}")
    return problems


def start_dashboard(cfg: cloud_config.CloudConfig, store: object, stop: threading.Event) -> threading.Thread | None:
    """Run ``cloud.dashboard.serve_dashboard(store, host, port, stop)`` in a thread if that package exists."""
    if not cfg.dashboard.enabled:
        return None
    try:
        dashboard = importlib.import_module("cloud.dashboard")
    except ImportError as exc:
        log.info("dashboard not started (%s)", exc)
        return None
    thread = threading.Thread(target=dashboard.serve_dashboard,
                              args=(store, cfg.dashboard.host, cfg.dashboard.port, stop),
                              name="tokencast-dashboard", daemon=True)
    thread.start()
    return thread


def attach_downlink(cfg: cloud_config.CloudConfig, worker: Worker, publish: Publish,
                    metrics: Metrics) -> ControlSender:
    """The worker's ``ControlSender``: sealed with the devices' keys, published on their ``ctl`` topics."""
    from cloud.downlink import ControlSender
    from link.control import ControlSealer

    sealer = ControlSealer(worker.opener.keys, tag_len=cfg.security.tag_len)
    return ControlSender(cfg.downlink, sealer, publish,
                         on_sent=lambda kind: metrics.control_sent.labels(type=kind).inc())


def serve(cfg: cloud_config.CloudConfig) -> int:
    from cloud.metrics import Metrics
    from cloud.store import make_store
    from cloud.worker import build_worker

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every thread's stack to stderr
    metrics = Metrics()
    if cfg.metrics.enabled:
        metrics.serve(cfg.metrics.host, cfg.metrics.port)
    store = make_store(cfg.store)
    source = keeper = None
    clean = False
    try:
        worker = build_worker(cfg, store=store, metrics=metrics)
        log.info("worker %s: tokenizers %s on %s, store %s %s", worker.owner, sorted(worker.codecs),
                 cfg.model.device, cfg.store.type, cfg.store.describe())
        if cfg.source == "mqtt":
            from cloud.sessions import SessionKeeper, mqtt_adopter
            from link.transports import TransportConfig, make_transport

            mqtt = cfg.broker.to_mqtt()
            keeper = SessionKeeper(store, mqtt.client_id, worker.owner, heartbeat_s=cfg.broker.heartbeat_s,
                                   adopt_after_s=cfg.broker.adopt_after_s,
                                   adopt=mqtt_adopter(worker, mqtt, max_s=cfg.broker.leave_timeout_s or 30.0))
            b = cfg.broker
            if b.adopt_after_s and b.adopt_after_s + 2 * b.heartbeat_s >= cfg.reassembly.timeout_s:
                log.warning("broker.adopt_after_s %.0f s is not well below reassembly.timeout_s %.0f s: frames with "
                            "fragments parked in a dead worker's session are stored partial before it is adopted",
                            b.adopt_after_s, cfg.reassembly.timeout_s)
            keeper.register()  # ClientIdClash before touching the broker: the session stays with its holder
            source = make_transport(TransportConfig(type="mqtt", mqtt=mqtt))
            keeper.start(stop)
            log.info("consuming %s as %s", mqtt.shared_subscription(), mqtt.client_id)
            if cfg.downlink.enabled:
                worker.downlink = attach_downlink(cfg, worker, source.send_down, metrics)  # type: ignore[attr-defined]
        start_dashboard(cfg, store, stop)
        worker.run(stop, source)  # type: ignore[arg-type]
        clean = True
    finally:
        stop.set()
        log.info("stopping%s", ": leaving the shared group" if clean and source is not None else "")
        if keeper is not None:
            keeper.join(5)  # mid-adoption it may take longer; it is a daemon thread and ends with us
        if source is not None:
            # a clean stop (SIGTERM, scale-down) leaves the group and ends the session; after a
            # failure the session is kept, so a restart under the same id resumes it or it is adopted
            if clean and cfg.broker.leave_timeout_s > 0 and worker.leave(source, max_s=cfg.broker.leave_timeout_s):
                keeper.release()  # type: ignore[union-attr]
            else:
                source.close()
        store.close()
        metrics.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = cloud_config.load(args.config)
    except ConfigError as exc:
        print(f"tokencast cloud: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        problems = check(cfg)
        for p in problems:
            print(f"tokencast cloud: {args.config}: {p}", file=sys.stderr)
        if not problems:
            print(f"{args.config}: ok (store {cfg.store.type} at {cfg.store.describe()}, source {cfg.source}, "
                  f"batch {cfg.batch.max_batch}/{cfg.batch.max_wait_ms:g} ms, device {cfg.model.device})")
        return 1 if problems else 0
    from cloud.sessions import ClientIdClash
    from cloud.store import StoreError

    try:
        return serve(cfg)
    except ClientIdClash as exc:
        log.error("cloud worker not started: %s", exc)
        return 2
    except (LinkError, StoreError, OSError) as exc:
        log.error("cloud worker stopped: %s", exc)
        return 1
