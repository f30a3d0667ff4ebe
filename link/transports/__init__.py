"""Transports behind a registry keyed by the config's ``type`` string.

Each backend module exposes ``create(cfg: TransportConfig) -> Transport`` and imports its
library (paho-mqtt, pyserial) itself, so a missing library only breaks that backend and
``make_transport`` reports it as BackendUnavailable naming the extra to install. A backend with a
downlink (``DOWNLINK = True`` in its module: MQTT) takes ``on_downlink``, called with each control
message's bytes; ``has_downlink(cfg)`` says whether a config has one (serial LoRa: no).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from link.errors import BackendUnavailable
from link.transports.base import Transport
from link.transports.config import LoopbackConfig, MqttConfig, SerialConfig, TransportConfig

log = logging.getLogger(__name__)

BACKENDS: dict[str, str] = {
    "loopback": "link.transports.loopback",
    "mqtt": "link.transports.mqtt",
    "serial": "link.transports.serial",
}


def has_downlink(cfg: TransportConfig) -> bool:
    """Whether this transport can carry the cloud's control messages to the device."""
    return cfg.type == "mqtt" and cfg.mqtt.downlink


def make_transport(cfg: TransportConfig, on_downlink: Callable[[bytes], object] | None = None) -> Transport:
    module_name = BACKENDS.get(cfg.type)
    if module_name is None:
        raise ValueError(f"unknown transport {cfg.type!r}; choose from {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"transport {cfg.type!r} needs {exc.name}; install tokencast[edge]") from None
    transport: Transport
    if on_downlink is not None and getattr(module, "DOWNLINK", False):
        transport = module.create(cfg, on_downlink)
    else:
        if on_downlink is not None:
            log.debug("transport %r has no downlink; control messages cannot reach this device", cfg.type)
        transport = module.create(cfg)
    return transport


__all__ = ["BACKENDS", "LoopbackConfig", "MqttConfig", "SerialConfig", "Transport", "TransportConfig",
           "has_downlink", "make_transport"]
