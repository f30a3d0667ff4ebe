"""Config -> live objects: the edge's composition root, one context manager.

Everything that holds a resource (camera, pipeline models, outbox database, systemd socket) is
opened here in an ExitStack and closed in reverse order however the service ends. The transport
is not opened here: the sender opens it lazily and reopens it after failures, so a camera
whose broker or radio is absent at boot still starts, captures and queues. With temporal coding
on a transport that has a downlink (MQTT), every transport the sender opens hands the cloud's
control messages to one ``edge.downlink.ControlReceiver`` bound to the selector's reference keeper.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from .capture import make_source
from .config import EdgeConfig
from .downlink import ControlReceiver
from .outbox import Outbox
from .packer import LinkPacker, load_sealer
from .reference import ReferenceKeeper
from .schedule import make_schedule
from .sdnotify import Notifier
from .sender import Sender, Transport
from .service import EdgeService, FramePacker, Selector


def open_transport_factory(cfg: EdgeConfig, on_downlink: Callable[[bytes], object] | None = None) -> Any:
    """A zero-argument callable that opens the configured ``link.transports`` backend."""
    from link.transports import make_transport

    settings = cfg.transport

    def open_transport() -> Transport:
        return make_transport(settings, on_downlink)

    return open_transport


def open_downlink(cfg: EdgeConfig, selector: object) -> ControlReceiver | None:
    """The receiver of the cloud's control messages, when the selector keeps a reference and the
    transport has a downlink; None otherwise (LoRa serial, loopback, no temporal coding)."""
    from link.transports import has_downlink

    keeper = getattr(selector, "keeper", None)
    if not isinstance(keeper, ReferenceKeeper) or not has_downlink(cfg.transport):
        return None
    from link.control import ControlOpener
    from link.security import load_key

    opener = ControlOpener(load_key(cfg.device.key_file), cfg.device.id, tag_len=cfg.pipeline.packet.tag_len)
    return ControlReceiver(opener, keeper, use_ack=cfg.temporal.use_ack)


def open_selector(cfg: EdgeConfig) -> Selector:
    from .pipeline import EdgePipeline

    pipeline = EdgePipeline.from_config(cfg.pipeline)
    if not cfg.temporal.enabled:
        return pipeline
    from .temporal import TemporalSelector

    try:
        return TemporalSelector(pipeline, cfg.temporal)
    except BaseException:
        pipeline.close()
        raise


@contextmanager
def build_service(
    cfg: EdgeConfig,
    stop: threading.Event,
    *,
    selector: Selector | None = None,
    packer: FramePacker | None = None,
    open_transport: Any = None,
    notifier: Notifier | None = None,
) -> Iterator[EdgeService]:
    """Open every part named by ``cfg``; parts passed in replace the configured ones (tests)."""
    with ExitStack() as stack:
        if packer is None:
            sealer = load_sealer(cfg.device.key_file, cfg.device.id, cfg.pipeline.packet.tag_len)
            packer = LinkPacker(cfg.device.id, cfg.pipeline.packet.mtu, sealer,
                                coarse_repeat=cfg.pipeline.packet.coarse_repeat)
        notifier = stack.enter_context(notifier or Notifier.from_env())
        outbox = stack.enter_context(Outbox(
            cfg.outbox.path, max_frames=cfg.outbox.max_frames, max_bytes=cfg.outbox.max_bytes,
            policy=cfg.outbox.policy, counter_file=cfg.outbox.effective_counter_file(),
        ))  # fmt: skip
        source = stack.enter_context(make_source(cfg.capture))
        if selector is None:
            selector = open_selector(cfg)
            if hasattr(selector, "close"):
                stack.callback(selector.close)
        downlink = open_downlink(cfg, selector)
        on_downlink = downlink.handle if downlink is not None else None
        sender = Sender(outbox, open_transport or open_transport_factory(cfg, on_downlink), cfg.sender, stop)
        stack.callback(sender.close)
        yield EdgeService(
            source=source, schedule=make_schedule(cfg.schedule), selector=selector, packer=packer,
            outbox=outbox, sender=sender, notifier=notifier, stop=stop,
            retry_s=cfg.capture.retry_s, reopen_after=cfg.capture.reopen_after,
        )  # fmt: skip
