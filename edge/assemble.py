"""Config -> live objects: the edge's composition root, one context manager.

Everything that holds a resource (camera, pipeline models, outbox database, systemd socket) is
opened here in an ExitStack and closed in reverse order however the service ends. The transport
is not opened here: the sender opens it lazily and reopens it after failures, so a camera
whose broker or radio is absent at boot still starts, captures and queues.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from .capture import make_source
from .config import EdgeConfig
from .outbox import Outbox
from .packer import LinkPacker, load_sealer
from .schedule import make_schedule
from .sdnotify import Notifier
from .sender import Sender, Transport
from .service import EdgeService, FramePacker, Selector


def open_transport_factory(cfg: EdgeConfig) -> Any:
    """A zero-argument callable that opens the configured ``link.transports`` backend."""
    from link.transports import make_transport

    settings = cfg.transport

    def open_transport() -> Transport:
        return make_transport(settings)

    return open_transport


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
        sender = Sender(outbox, open_transport or open_transport_factory(cfg), cfg.sender, stop)
        stack.callback(sender.close)
        yield EdgeService(
            source=source, schedule=make_schedule(cfg.schedule), selector=selector, packer=packer,
            outbox=outbox, sender=sender, notifier=notifier, stop=stop,
            retry_s=cfg.capture.retry_s, reopen_after=cfg.capture.reopen_after,
        )  # fmt: skip
