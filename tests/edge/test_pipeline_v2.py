"""Two-layer frames end to end: v2 encoder ONNX -> selection under a byte budget -> wire v2 ->
reassembly -> TokenCodec2 reconstruction, with random-init weights of the real shapes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cloud.restoring import reconstruct_frames  # noqa: E402
from edge.packer import LinkPacker  # noqa: E402
from edge.pipeline import EdgePipeline, PacketConfig, PipelineConfig  # noqa: E402
from edge.sampler import BudgetConfig  # noqa: E402
from link.frame import frame_scale  # noqa: E402
from link.packet import wire_size  # noqa: E402
from link.reassembly import Reassembler, unpack  # noqa: E402
from link.security import KeyStore, Opener, Sealer  # noqa: E402
from models.codec2 import TokenCodec2  # noqa: E402
from tokencast.encoder_export import export_encoder  # noqa: E402

KEY = bytes(range(16))


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return TokenCodec2.load(3, device="cpu", random_init=True)


@pytest.fixture(scope="module")
def encoder(codec, tmp_path_factory):
    path = tmp_path_factory.mktemp("v2") / "enc2.onnx"
    export_encoder(codec.tokenizer, path)
    return path


def pipeline(encoder, graphs, budget: BudgetConfig, **packet) -> EdgePipeline:
    cfg = PipelineConfig(encoder=encoder, tokenizer_id=3, budget=budget, packet=PacketConfig(**packet))
    cfg.segmenter.backend = "none"
    cfg.recoverability.scorer = graphs["scorer"]
    return EdgePipeline.from_config(cfg)


def test_selection_is_byte_exact_and_round_trips(encoder, graphs, build, codec):
    img = build.photo(100, 150)
    with pipeline(encoder, graphs, BudgetConfig("bpp", 0.3)) as pipe:
        sel = pipe.select(img)
    assert sel.coarse is not None and sel.coarse.shape == (4, 7, 10) and sel.scale == 1
    assert (sel.grid_h, sel.grid_w) == (13, 19)
    assert sel.size_bytes <= sel.limit and sel.kept.any()
    packed = LinkPacker(5, 222, Sealer(KEY, 5))(sel, counter=3, capture_ms=1)
    assert sum(map(len, packed.fragments)) == sel.size_bytes  # the budget holds to the byte
    got = unpack(packed.fragments, Opener(KeyStore({5: KEY})))
    assert got.complete and np.array_equal(got.coarse, sel.coarse)
    assert np.array_equal(got.kept, sel.kept) and np.array_equal(got.indices, sel.indices)
    tokens, images = reconstruct_frames(codec, [got], seed=0)
    assert images[0].shape == (100, 150, 3)
    assert np.array_equal(tokens[0][sel.kept], sel.indices)  # sent tokens are never overwritten


def test_tiny_budget_codes_a_smaller_picture_and_the_cloud_scales_it_back(encoder, graphs, build, codec):
    img = build.photo(128, 192)
    with pipeline(encoder, graphs, BudgetConfig("bytes", 90), mtu=222) as pipe:
        sel = pipe.select(img)
    assert sel.scale in (2, 4) and sel.size_bytes <= 90
    packed = LinkPacker(5, 222, None)(sel, counter=4, capture_ms=1)
    got = unpack(packed.fragments)
    assert frame_scale(got) == sel.scale and (got.width, got.height) == (192, 128)
    _, images = reconstruct_frames(codec, [got], seed=0)
    assert images[0].shape == (128, 192, 3)


def test_coarse_repeat_pays_in_the_budget_and_counts_as_duplicates(encoder, graphs, build):
    img = build.photo(100, 150)
    with pipeline(encoder, graphs, BudgetConfig("bytes", 700), coarse_repeat=2) as pipe:
        sel = pipe.select(img)
    packed = LinkPacker(5, 222, Sealer(KEY, 5), coarse_repeat=2)(sel, counter=3, capture_ms=1)
    assert sum(map(len, packed.fragments)) == sel.size_bytes <= 700
    r = Reassembler(Opener(KeyStore({5: KEY})))
    out = []
    for i, f in enumerate(packed.fragments):
        out += r.feed(f, now=float(i))
    assert len(out) == 1 and out[0].complete
    n_coarse = sum(1 for f in packed.fragments if f[1] & 0x08) // 2
    assert n_coarse >= 1 and r.stats.duplicates == n_coarse  # the copies of a completed frame are dropped
    assert wire_size(out[0].to_frame(), mtu=222, tag_len=8) + sum(
        len(f) for f in packed.fragments[-n_coarse:]) == sel.size_bytes


def test_a_size_over_budget_last_time_is_skipped_then_retried(encoder, graphs, build):
    """Under a budget below a full-size empty frame the next pictures start at the smaller size
    (no full-size encode thrown away), and every RETRY_AFTER frames full size is tried again."""
    img = build.photo(128, 192)
    with pipeline(encoder, graphs, BudgetConfig("bytes", 90), mtu=222) as pipe:
        calls: list[tuple[int, int]] = []
        encode = pipe.encode_layers

        def counted(padded):
            calls.append(padded.shape[:2])
            return encode(padded)

        pipe.encode_layers = counted  # type: ignore[method-assign]
        first = pipe.select(img)
        assert calls[0] == (128, 192) and first.scale in (2, 4)  # full size tried, then smaller
        calls.clear()
        for _ in range(EdgePipeline.RETRY_AFTER):
            assert pipe.select(img).scale == first.scale
        assert (128, 192) not in calls  # skipped while the memory holds
        calls.clear()
        assert pipe.select(img).scale == first.scale
        assert calls[0] == (128, 192)  # retried after RETRY_AFTER frames


def test_without_downscale_a_small_budget_keeps_failing_clearly(encoder, graphs, build):
    from edge.sampler import BudgetTooSmall

    img = build.photo(128, 192)
    with pipeline(encoder, graphs, BudgetConfig("bytes", 90), mtu=222) as pipe:
        pipe.config.downscale = False
        for _ in range(3):
            with pytest.raises(BudgetTooSmall):
                pipe.select(img)
