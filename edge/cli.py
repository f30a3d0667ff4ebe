"""``tokencast edge run|check-config``: the camera service's command line.

Exit codes: 0 clean stop (SIGTERM, --once/--max-frames done, image folder read), 1 runtime
failure (camera, storage, models, sender thread died: systemd's Restart=on-failure applies),
2 bad configuration or usage (restarting would not help). A config error is one line naming the
file and key, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from link.config import ConfigError

if TYPE_CHECKING:
    from .config import EdgeConfig

log = logging.getLogger("edge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokencast edge", description="Run the tokencast camera service.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="capture, select, queue and send frames until stopped")
    run.add_argument("--config", required=True, help="edge TOML file (see edge/edge.example.toml)")
    run.add_argument("--once", action="store_true", help="send one frame now (schedule bypassed), then exit")
    run.add_argument("--max-frames", type=int, metavar="N", help="exit after N frames are queued and sent")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="overrides log_level")
    check = sub.add_parser("check-config", help="load and check the config and key, then exit")
    check.add_argument("--config", required=True, help="edge TOML file to check (and its key file)")
    return parser


def setup_logging(level: str) -> None:
    # journald timestamps each line itself; elsewhere we add the time.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import load_edge_config

    try:
        cfg = load_edge_config(args.config)
    except ConfigError as exc:
        print(f"tokencast edge: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        return check_config(cfg, args.config)
    if args.max_frames is not None and args.max_frames < 1:
        print("tokencast edge: --max-frames must be >= 1", file=sys.stderr)
        return 2
    setup_logging(args.log_level or cfg.log_level)
    return run(cfg, args.config, once=args.once, max_frames=args.max_frames, debug=(args.log_level == "DEBUG"))


def check_config(cfg: EdgeConfig, path: str) -> int:
    from .packer import load_sealer

    try:
        load_sealer(cfg.device.key_file, cfg.device.id, cfg.pipeline.packet.tag_len)
    except ValueError as exc:
        print(f"tokencast edge: config error: {path}, key 'device.key_file': {exc}", file=sys.stderr)
        return 2
    print(
        f"{path}: ok (device {cfg.device.id}, capture {cfg.capture.source}, schedule {cfg.schedule.mode}, "
        f"transport {cfg.transport.type}, outbox {cfg.outbox.path})"
    )
    return 0


def run(cfg: EdgeConfig, path: str, *, once: bool, max_frames: int | None, debug: bool = False) -> int:
    from .assemble import build_service
    from .capture import CaptureError
    from .outbox import StorageError
    from .service import RunLimits, stop_on_signals

    stop = threading.Event()
    limits = RunLimits(once=once, max_frames=max_frames, drain_timeout_s=cfg.sender.drain_timeout_s)
    try:
        with stop_on_signals(stop), build_service(cfg, stop) as service:
            return service.run(limits)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return 2
    except ValueError as exc:  # a key file that does not parse, a backend name that does not exist
        log.error("cannot start (%s): %s", path, exc, exc_info=debug)
        return 2
    except (CaptureError, StorageError) as exc:
        log.error("cannot start: %s", exc, exc_info=debug)
        return 1
    except Exception as exc:
        log.error("edge service failed: %s: %s", type(exc).__name__, exc, exc_info=debug)
        return 1
