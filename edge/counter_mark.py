"""The frame counter's high-water mark: a small file, written ahead and fsynced, that outlives the outbox.

The counter is the AEAD nonce and the cloud's replay key, so it must never go back under one
key. The outbox database keeps it, but a camera whose database is lost (SD card corruption, a
deleted file, a reflashed state partition) used to start again at 1: nonce reuse, and the cloud
silently dropped its new frames as duplicates of old ones.

This file holds one number, ``limit``: no counter at or above it has ever been handed out.
Before a counter at or above ``limit`` is used, ``limit`` moves a block ahead and is written
(temp file, fsync, rename, fsync of the folder), so one fsync covers ``block`` frames. On start
the outbox begins at max(its own next counter, ``limit``): a restart skips at most ``block``
counters, which is harmless (the cloud's replay window only needs counters to grow) and also
covers an outbox database restored from an older copy. Put the file on storage that survives
what the outbox might not (``[outbox] counter_file``); if both are lost, provision a new device
key before sending again (link/README.md, "Counters and keys").
"""

from __future__ import annotations

import os
from pathlib import Path

COUNTER_MAX = 2**32 - 1  # the wire's u32
DEFAULT_BLOCK = 64


class CounterMarkError(OSError):
    """The mark cannot be read or written; starting (or sending) anyway could reuse a nonce."""


class CounterMark:
    def __init__(self, path: str | Path, block: int = DEFAULT_BLOCK) -> None:
        if block < 1:
            raise ValueError(f"counter block must be >= 1, got {block}")
        self.path, self.block = Path(path), block
        self.limit = self._read()

    def _read(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise CounterMarkError(f"cannot read the counter mark {self.path}: {exc}") from exc
        try:
            value = int(text)
        except ValueError:
            raise CounterMarkError(f"counter mark {self.path} holds {text[:40]!r}, not a number; restore it, "
                                   "or provision a new device key and delete it") from None
        if not 0 <= value <= COUNTER_MAX + 1:
            raise CounterMarkError(f"counter mark {self.path} holds {value}, outside 0..{COUNTER_MAX + 1}")
        return value

    def reserve(self, counter: int) -> None:
        """Make the file say more than ``counter`` before ``counter`` is used (fsynced when it moves)."""
        if counter < self.limit:
            return
        if counter > COUNTER_MAX:
            raise CounterMarkError(f"frame counter {counter} would pass the wire's u32; provision a new device key")
        new = min(counter + self.block, COUNTER_MAX + 1)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, f"{new}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise CounterMarkError(f"cannot write the counter mark {self.path}: {exc}") from exc
        self.limit = new
