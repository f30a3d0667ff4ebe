"""Selection + counter -> sealed fragments: the one place the edge builds a ``link.frame.Frame``.

Called by the outbox inside the transaction that allocates ``counter`` (see ``edge.outbox``).
The semantic score stored beside the fragments is the share of grid positions kept because a
detected object covers them; the outbox's ``keep-semantic`` policy drops low scores first.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .outbox import Packed

log = logging.getLogger(__name__)

PackFn = Callable[..., Sequence[bytes]]  # link.packet.pack(frame, *, mtu, sealer, prior) -> list[bytes]


class LinkPacker:
    def __init__(self, device_id: int, mtu: int, sealer: Any, pack: PackFn | None = None,
                 coarse_repeat: int = 1) -> None:
        if pack is None:
            from link.packet import pack as link_pack

            pack = link_pack
        self.device_id, self.mtu, self.sealer, self._pack = device_id, mtu, sealer, pack
        self.coarse_repeat = coarse_repeat

    def __call__(self, selection: Any, counter: int, capture_ms: int) -> Packed:
        from link.frame import Frame

        frame = Frame(
            device_id=self.device_id, counter=counter, capture_ms=capture_ms,
            width=selection.width, height=selection.height, tokenizer_id=selection.tokenizer_id,
            grid_h=selection.grid_h, grid_w=selection.grid_w, kept=selection.kept, indices=selection.indices,
            coarse=getattr(selection, "coarse", None), frame_type=getattr(selection, "frame_type", 0),
            ref_counter=getattr(selection, "ref_counter", None),  # delta frames (edge.temporal)
            dc=getattr(selection, "dc", None) if getattr(selection, "coarse", None) is not None else None,
        )  # fmt: skip
        from link.entropy import default_prior

        # The same shipped prior the pipeline sized the packet with, so the budget holds exactly.
        fragments = list(self._pack(frame, mtu=self.mtu, sealer=self.sealer, prior=default_prior(frame.tokenizer_id)))
        fragments += repeat_coarse(fragments, self.coarse_repeat)
        fragments += fill_copies(fragments, getattr(selection, "min_packets", 1))  # delta frames (edge.temporal)
        return Packed(fragments, semantic_score(selection))


def repeat_coarse(fragments: Sequence[bytes], repeat: int) -> list[bytes]:
    """Extra copies of a v2 frame's coarse fragments, sent after the fine ones (time diversity
    against burst loss); the cloud keeps the first copy of each and counts the rest as duplicates."""
    coarse = [f for f in fragments if len(f) > 1 and f[0] == 2 and f[1] & 0x08]
    return coarse * (repeat - 1)


def fill_copies(fragments: Sequence[bytes], min_packets: int) -> list[bytes]:
    """Copies of the smallest fragments (cycling, smallest first) until the frame goes out as
    ``min_packets`` packets: a frame of one or two fragments then survives losing any but one.
    ``edge.delta.delta_cost_fn`` charges the same copies."""
    order = sorted(fragments, key=len)
    return [order[i % len(order)] for i in range(max(0, min_packets - len(order)))] if order else []


def semantic_score(selection: Any) -> float:
    positions = max(1, int(selection.grid_h) * int(selection.grid_w))
    return float(getattr(selection, "n_semantic", 0)) / positions


def load_sealer(key_file: Path, device_id: int, tag_len: int) -> Any:
    """This device's ``link.security.Sealer``; warns when the key file is readable by others."""
    from link.security import Sealer, load_key

    try:
        mode = os.stat(key_file).st_mode
    except OSError as exc:
        raise ValueError(f"{key_file}: cannot read key ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is accessible to group/others (mode %o); chmod 600 it", key_file, mode & 0o777)
    return Sealer(load_key(key_file), device_id, tag_len=tag_len)
