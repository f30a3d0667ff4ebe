"""``tokencast gateway --config gateway.toml``: bridge a serial LoRa link to MQTT (or a local worker)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from cloud.gateway import GatewayConfig, serve
from link.config import ConfigError, load_config
from link.errors import LinkError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokencast gateway", description="forward a serial radio link to MQTT")
    p.add_argument("--config", type=Path, required=True,
                   help="gateway TOML file (see cloud/gateway.example.toml): serial port, radio, broker")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="log verbosity (default INFO)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(GatewayConfig, args.config)
    except ConfigError as exc:
        print(f"tokencast gateway: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok ({cfg.serial.url} at {cfg.serial.baudrate} baud -> {cfg.sink})")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve(cfg, stop)
    except (LinkError, OSError, ValueError) as exc:
        print(f"tokencast gateway: {exc}", file=sys.stderr)
        return 1
    return 0
