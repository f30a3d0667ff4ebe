"""The worker on wire v2 frames (coarse layer + fine tokens): staged by layer, stored whole or partial."""

from __future__ import annotations

import time

import numpy as np
import pytest
from cloudkit import IMAGE, device_key
from PIL import Image

from cloud.store import make_store
from cloud.worker import STAGED, Worker
from link.frame import Frame
from link.header2 import LAYER_COARSE, parse_header2
from link.packet import pack
from link.security import Sealer
from link.tokenizers import get_tokenizer

SPEC = get_tokenizer(3)


@pytest.fixture(scope="module")
def codec2():
    import torch

    from models.codec2 import TokenCodec2

    torch.manual_seed(0)
    return TokenCodec2.load(3, device="cpu", random_init=True)


def frame_v2(device_id: int, counter: int, keep: float = 0.4) -> Frame:
    rng = np.random.default_rng(counter)
    g = IMAGE // 8
    ch, cw = SPEC.coarse_grid(g, g)
    coarse = rng.integers(0, 5, size=(4, ch, cw))
    kept = rng.random((g, g)) < keep
    return Frame.from_index_grid(rng.integers(0, 1024, size=(g, g)), kept, device_id=device_id, counter=counter,
                                 capture_ms=1_700_000_000_000, width=IMAGE, height=IMAGE, tokenizer_id=3,
                                 coarse=coarse)


@pytest.fixture
def worker(cfg, codec2):
    cfg.model.tokenizer_ids = [3]
    store = make_store(cfg.store)
    w = Worker(cfg, store, {3: codec2})
    yield w
    store.close()


def test_v2_frame_stored_complete_and_sent_tokens_kept(worker):
    f = frame_v2(1, 1)
    frags = pack(f, mtu=51, sealer=Sealer(device_key(1), 1))
    layers = [parse_header2(x).layer for x in frags]
    assert layers[0] == LAYER_COARSE and layers[-1] != LAYER_COARSE  # coarse first
    # a coarse and a fine slice both start at 0: staged by (layer, start), neither is a duplicate
    assert [worker.submit(x) for x in frags] == [STAGED] * len(frags)
    stored = worker.drain()
    assert len(stored) == 1 and stored[0].complete and stored[0].lost_ratio == 0
    img = Image.open(worker.store.frame_paths(1, 1).image)
    assert img.size == (IMAGE, IMAGE)


def test_v2_frame_with_a_lost_coarse_fragment_is_still_stored(cfg, codec2):
    cfg.model.tokenizer_ids = [3]
    cfg.reassembly.timeout_s = 0.3
    store = make_store(cfg.store)
    worker = Worker(cfg, store, {3: codec2})
    f = frame_v2(1, 2)
    frags = pack(f, mtu=51, sealer=Sealer(device_key(1), 1))
    coarse = [x for x in frags if parse_header2(x).layer == LAYER_COARSE]
    assert len(coarse) >= 2
    for x in frags:
        if x is not coarse[1]:
            worker.submit(x)
    assert worker.process() == []  # waiting for the missing coarse fragment
    time.sleep(0.35)
    [rec] = worker.process()
    assert not rec.complete and rec.lost_ratio == 0  # no fine position lost: the coarse cells are
    assert rec.fragments_received == len(frags) - 1
    assert Image.open(worker.store.frame_paths(1, 2).image).size == (IMAGE, IMAGE)
    store.close()
