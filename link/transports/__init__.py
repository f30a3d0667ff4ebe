"""Transports behind a registry keyed by the config's ``type`` string.

Each backend module exposes ``create(cfg: TransportConfig) -> Transport`` and imports its
library (paho-mqtt, pyserial) itself, so a missing library only breaks that backend and
``make_transport`` reports it as BackendUnavailable naming the extra to install.
"""

from __future__ import annotations

import importlib

from link.errors import BackendUnavailable
from link.transports.base import Transport
from link.transports.config import LoopbackConfig, MqttConfig, SerialConfig, TransportConfig

BACKENDS: dict[str, str] = {
    "loopback": "link.transports.loopback",
    "mqtt": "link.transports.mqtt",
    "serial": "link.transports.serial",
}


def make_transport(cfg: TransportConfig) -> Transport:
    module_name = BACKENDS.get(cfg.type)
    if module_name is None:
        raise ValueError(f"unknown transport {cfg.type!r}; choose from {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"transport {cfg.type!r} needs {exc.name}; install tokencast[edge]") from None
    transport: Transport = module.create(cfg)
    return transport


__all__ = ["BACKENDS", "LoopbackConfig", "MqttConfig", "SerialConfig", "Transport", "TransportConfig",
           "make_transport"]
