"""cloud.references.resolve alone: which cells a delta frame takes from its reference."""

from __future__ import annotations

import numpy as np

from cloud.references import resolve
from cloud.store import ReferenceRecord
from link.frame import FRAME_DELTA, ReceivedFrame


def delta(kept: np.ndarray, grid=(2, 4), capture_ms=5) -> ReceivedFrame:
    h, w = grid
    return ReceivedFrame(1, 9, capture_ms, w * 8, h * 8, 3, h, w, kept, np.full(int(kept.sum()), 900),
                         np.zeros((h, w), bool), 1, 1, True, frame_type=FRAME_DELTA, ref_counter=4)


def ref(sent=None) -> ReferenceRecord:
    coarse = np.ones((4, 1, 2), np.int64)
    return ReferenceRecord(1, 4, 3, 2, 4, 30, 14, np.arange(8).reshape(2, 4), coarse, np.array([[True, False]]),
                           sent=sent)


def test_sent_cells_of_the_key_frame_and_the_delta_are_known_the_rest_restored():
    k = np.zeros((2, 4), bool)
    k[0, 0] = True
    sent = np.zeros((2, 4), bool)
    sent[1, :2] = True
    f, why = resolve(delta(k), ref(sent))
    assert why is None
    assert np.array_equal(f.kept, k | sent) and f.index_grid()[0, 0] == 900 and f.index_grid()[1, 1] == 5
    # coarse cell (0, 1) never arrived; (0, 0) holds a cell the delta sent: the picture moved there
    assert np.array_equal(f.coarse_lost, [[True, True]]) and f.coarse.shape == (4, 1, 2)
    f, _ = resolve(delta(np.zeros((2, 4), bool)), ref(sent))
    assert np.array_equal(f.coarse_lost, [[False, True]])


def big_ref(dc=None) -> ReferenceRecord:
    sent = np.ones((8, 12), bool)  # a full key frame: every token came over the link
    return ReferenceRecord(1, 4, 3, 8, 12, 96, 64, np.arange(96).reshape(8, 12) % 1024,
                           np.ones((4, 4, 6), np.int64), np.ones((4, 6), bool), sent=sent, dc=dc)


def test_block_means_of_the_key_frame_serve_the_delta_where_it_did_not_move():
    dc = np.full((3, 2, 3), 7, np.int64)
    dc[:, 1, 2] = -1  # this block mean of the key frame was lost
    k = np.zeros((8, 12), bool)
    k[0:2, 0:2] = True  # four of the first 4x4 block's sixteen cells moved
    k[0, 4] = True  # one cell of the second: below a quarter
    f, why = resolve(delta(k, grid=(8, 12)), big_ref(dc))
    assert why is None and f.dc is not None and (f.dc[:, 0, 1] == 7).all()
    assert np.array_equal(f.dc_lost, [[True, False, False], [False, False, True]])
    assert f.coarse_lost[0, 0] and f.coarse_lost[0, 2] and not f.coarse_lost[1:].any()
    f, _ = resolve(delta(k, grid=(8, 12)), big_ref())
    assert f.dc is None  # a reference without block means lends none


def test_a_delta_that_lost_a_fragment_takes_the_reference_tokens_there_and_is_not_lost():
    k = np.zeros((8, 12), bool)
    k[5, 5] = True
    rf = delta(k, grid=(8, 12))
    rf.lost = np.zeros((8, 12), bool)
    rf.lost[0:3] = True  # the fragment carrying rows 0-2 never arrived
    f, why = resolve(rf, big_ref())
    assert why is None and f.kept.all() and not f.lost.any()
    assert f.index_grid()[1, 1] == 13 and f.index_grid()[5, 5] == 900


def test_a_reference_without_a_sent_map_lends_every_cell_and_its_size_when_the_info_was_lost():
    k = np.zeros((2, 4), bool)
    f, why = resolve(delta(k, capture_ms=None), ref())
    assert why is None and f.kept.all() and (f.width, f.height) == (30, 14)


def test_wrong_grid_or_no_reference_is_degraded_with_the_coarse_layer_unknown():
    k = np.ones((3, 4), bool)
    f, why = resolve(delta(k, grid=(3, 4)), ref())
    assert "grid 2x4" in why and f.coarse is None and np.array_equal(f.kept, k)
    f, why = resolve(delta(np.ones((2, 4), bool)), None)
    assert "not in the store" in why and f.coarse is None
