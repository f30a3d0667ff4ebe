"""Tokenizer v2 codec (coarse layer + fine tokens) and the coarse-conditioned restorer, on
random-init weights; plus: the shipped v1 MaskGIT still loads into the extended model class."""

import numpy as np
import pytest
import torch

from models.checkpoints import CHECKPOINT_DIR, load_weights
from models.codec2 import CodecInputError, TokenCodec2
from models.maskgit import MaskGIT, MaskGITConfig, coarse_to_fine
from models.restore import RestoreConfig, Restorer


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return TokenCodec2.load(random_init=True, device="cpu", restore=RestoreConfig(steps=3, window=8, overlap=2))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    # One size not a multiple of 16 (fine grid odd, coarse grid padded), one that is.
    return [rng.integers(0, 256, (70, 100, 3), dtype=np.uint8), rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)]


def test_encode_shapes(codec, images):
    enc = codec.encode(images)
    assert [f.shape for f, _ in enc] == [(9, 13), (8, 6)]
    assert [c.shape for _, c in enc] == [(4, 5, 7), (4, 4, 3)]
    for f, c in enc:
        assert f.dtype == np.int64 and c.dtype == np.int64
        assert (c >= 0).all() and (c < np.array(codec.coarse_levels).reshape(-1, 1, 1)).all()


def test_reconstruct_keeps_known_fine_tokens_and_fills_lost_coarse_cells(codec, images):
    enc = codec.encode(images)
    rng = np.random.default_rng(1)
    known = [rng.random(f.shape) < 0.4 for f, _ in enc]
    sizes = [im.shape[:2] for im in images]
    for coarse_keep in (1.0, 0.6, 0.0):  # all coarse cells, some lost, none arrived
        ck = [rng.random(c.shape[1:]) < coarse_keep for _, c in enc]
        # Garbage at unknown fine cells and lost coarse cells must not matter.
        fine = [np.where(k, f, 5000) for (f, _), k in zip(enc, known)]
        coarse = [np.where(k[None], c, 99) for (_, c), k in zip(enc, ck)]
        tokens, out = codec.reconstruct(fine, known, coarse, ck, sizes, seed=2)
        for (f, _), k, t, o, im in zip(enc, known, tokens, out, images):
            assert t.shape == f.shape and t.dtype == np.int64
            assert (t[k] == f[k]).all()
            assert t.min() >= 0 and t.max() < 1024
            assert o.shape == im.shape and o.dtype == np.uint8


def test_nothing_fine_known_and_all_known(codec, images):
    enc = codec.encode(images[:1])
    f, c = enc[0]
    ck = np.ones(c.shape[1:], bool)
    t, _ = codec.reconstruct([f], [np.zeros_like(f, bool)], [c], [ck], [images[0].shape[:2]])
    assert t[0].shape == f.shape
    t, o = codec.reconstruct([f], [np.ones_like(f, bool)], [c], [ck], [images[0].shape[:2]])
    assert (t[0] == f).all() and o[0].shape == images[0].shape


def test_coarse_only_decode_gives_a_full_image(codec, images):
    enc = codec.encode(images)
    rng = np.random.default_rng(3)
    for keep in (1.0, 0.5, 0.0):
        ck = [rng.random(c.shape[1:]) < keep for _, c in enc]
        out = codec.decode_coarse_only([c for _, c in enc], ck, [im.shape[:2] for im in images])
        assert [o.shape for o in out] == [im.shape for im in images]


def test_lost_coarse_cells_are_interpolated_from_arrived_ones(codec):
    levels = np.full((4, 3, 3), 2, np.int64)
    levels[:, 0, 0] = 0
    known = np.ones((3, 3), bool)
    known[1, 1] = False
    v = codec.coarse_values(levels, known)[0]
    full = codec.coarse_values(levels)[0]
    assert torch.equal(v[:, known], full[:, known])  # arrived cells are exact
    lo, hi = full.min(dim=-1).values.min(dim=-1).values, full.max(dim=-1).values.max(dim=-1).values
    assert bool(((v[:, 1, 1] >= lo) & (v[:, 1, 1] <= hi)).all())  # a mean of neighbours
    assert torch.count_nonzero(codec.coarse_values(levels, np.zeros((3, 3), bool))) == 0


def test_bad_inputs_raise_typed_errors(codec, images):
    f, c = codec.encode(images[:1])[0]
    size = images[0].shape[:2]
    k, ck = np.ones_like(f, bool), np.ones(c.shape[1:], bool)
    with pytest.raises(CodecInputError, match="fine grid"):
        codec.reconstruct([f[:-1]], [k[:-1]], [c], [ck], [size])
    with pytest.raises(CodecInputError, match="coarse grid"):
        codec.reconstruct([f], [k], [c[:, :-1]], [ck[:-1]], [size])
    with pytest.raises(CodecInputError, match="out of range"):
        codec.reconstruct([f], [k], [np.full_like(c, 9)], [ck], [size])
    with pytest.raises(CodecInputError, match="in number"):
        codec.reconstruct([f], [k], [c], [ck], [size, size])
    with pytest.raises(CodecInputError):
        codec.encode([images[0].astype(np.float32)])


def test_restorer_windows_carry_the_coarse_values_under_their_tokens():
    torch.manual_seed(0)
    cfg = MaskGITConfig(codebook_size=32, dim=32, depth=1, heads=2, max_grid=16, latent_dim=4, interp_sigma=1.0,
                        coarse_channels=3)
    m = MaskGIT(cfg).eval()
    m.set_codebook(torch.randn(32, 4))
    torch.nn.init.normal_(m.coarse_in.weight)  # a model that uses the coarse layer
    rng = np.random.default_rng(0)
    ids = np.where(rng.random((7, 8)) < 0.5, rng.integers(0, 32, (7, 8)), cfg.mask_id)
    coarse = rng.standard_normal((3, 4, 4)).astype(np.float32)
    r = Restorer(m, RestoreConfig(window=8, overlap=2))
    direct = m(torch.from_numpy(ids)[None], coarse_to_fine(torch.from_numpy(coarse)[None], 7, 8))[0]
    assert torch.allclose(r.logits(ids, coarse), direct, atol=1e-5)  # one window: the same pass
    # Tiled: windows at odd offsets still see the coarse values of their own cells.
    big = np.where(rng.random((13, 11)) < 0.5, rng.integers(0, 32, (13, 11)), cfg.mask_id)
    big_coarse = rng.standard_normal((3, 7, 6)).astype(np.float32)
    r6 = Restorer(m, RestoreConfig(window=6, overlap=2))
    lg = r6.logits(big, big_coarse)
    fine = coarse_to_fine(torch.from_numpy(big_coarse)[None], 13, 11)
    own = r6._tiling(13, 11)
    y, x = own["ys"][1], own["xs"][1]
    win = m(torch.from_numpy(big[y : y + 6, x : x + 6])[None], fine[..., y : y + 6, x : x + 6])[0]
    cells = own["owner"][y : y + 6, x : x + 6] == 1 * len(own["xs"]) + 1
    assert torch.allclose(lg[y : y + 6, x : x + 6][torch.from_numpy(cells)], win[torch.from_numpy(cells)], atol=1e-5)
    with pytest.raises(ValueError, match="coarse"):
        r.restore([ids], [ids != cfg.mask_id])


def test_v1_maskgit_checkpoint_still_loads_and_v2_starts_as_v1():
    path = CHECKPOINT_DIR / "maskgit_f8_k1024.safetensors"
    state, meta = load_weights(path)
    v1_cfg = MaskGITConfig.from_dict(meta["config"])
    assert v1_cfg.coarse_channels == 0
    v1 = MaskGIT(v1_cfg)
    v1.load_state_dict(state)  # strict: no new parameters in a v1 model
    with pytest.raises(ValueError, match="coarse"):
        v1.forward_both(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, 4))
    v2 = MaskGIT(MaskGITConfig(**{**v1_cfg.to_dict(), "coarse_channels": 4}))
    missing, unexpected = v2.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("coarse_in.", "coarse_prior.")) for k in missing)
    ids = torch.randint(0, 1024, (2, 8, 8))
    ids[:, ::2] = v1_cfg.mask_id
    a = v1.eval().forward_both(ids)
    b = v2.eval().forward_both(ids, torch.randn(2, 4, 8, 8))  # zero-initialised coarse paths
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_shipped_v2_files_pair_up_and_reconstruct(images):
    """The shipped tokenizer v2 and MaskGIT v2 must share the coarse head (fingerprint check in
    ``load``): a tokenizer file exported before the coarse freeze would be refused here."""
    from models.registry import files_for

    files = files_for(3)
    if not (files.path("tokenizer").is_file() and files.path("maskgit").is_file()):
        pytest.skip("tokenizer v2 / MaskGIT v2 weights not on disk")
    codec = TokenCodec2.load(3, device="cpu", restore=RestoreConfig(steps=2))
    f, c = codec.encode(images[1:])[0]
    k = np.zeros_like(f, bool)
    k[:4] = True
    t, out = codec.reconstruct([f], [k], [c], [np.ones(c.shape[1:], bool)], [images[1].shape[:2]])
    assert (t[0][k] == f[k]).all() and out[0].shape == images[1].shape
