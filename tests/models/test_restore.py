import numpy as np
import pytest
import torch

from models.maskgit import MaskGIT, MaskGITConfig, masked_ce
from models.masks import dispersed_known, training_known
from models.restore import RestoreConfig, Restorer, owner_map, tile_starts


def make(**kw):
    torch.manual_seed(0)
    return Restorer(MaskGIT(MaskGITConfig(codebook_size=32, dim=32, depth=1, heads=2, max_grid=16)),
                    RestoreConfig(window=8, overlap=2, **kw))


def test_tile_starts_cover_the_grid():
    for size in (1, 8, 9, 20, 64):
        starts = tile_starts(size, min(8, size), 2)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s : s + min(8, size)] = True
        assert covered.all()
        assert starts[-1] + min(8, size) == size


def test_owner_map_assigns_every_cell_to_a_tile_containing_it():
    ys, xs = tile_starts(20, 8, 2), tile_starts(13, 8, 2)
    own = owner_map(20, 13, ys, xs, 8, 8)
    for y in range(20):
        for x in range(13):
            t = own[y, x]
            ty, tx = ys[t // len(xs)], xs[t % len(xs)]
            assert ty <= y < ty + 8 and tx <= x < tx + 8


def test_known_tokens_untouched_and_all_filled():
    r = make()
    rng = np.random.default_rng(1)
    grids = [rng.integers(0, 32, (20, 13)), rng.integers(0, 32, (5, 6))]
    known = [rng.random(g.shape) < 0.4 for g in grids]
    out = r.restore(grids, known, seed=3)
    for g, k, o in zip(grids, known, out):
        assert o.shape == g.shape
        assert (o[k] == g[k]).all()
        assert o.min() >= 0 and o.max() < 32  # the mask id (32) is never produced


def test_same_seed_same_output_and_sampling_mode():
    r = make(temperature=1.0, top_k=5)
    rng = np.random.default_rng(2)
    g = rng.integers(0, 32, (12, 12))
    k = rng.random(g.shape) < 0.5
    a = r.restore([g], [k], seed=7)[0]
    b = r.restore([g], [k], seed=7)[0]
    assert (a == b).all()


def test_all_known_is_identity_and_nothing_known_works():
    r = make()
    g = np.arange(36).reshape(6, 6) % 32
    assert (r.restore([g], [np.ones_like(g, bool)])[0] == g).all()
    out = r.restore([g], [np.zeros_like(g, bool)])[0]
    assert out.shape == g.shape


def test_bad_shapes_raise():
    r = make()
    with pytest.raises(ValueError):
        r.restore([np.zeros((4, 4), int)], [np.zeros((4, 5), bool)])
    with pytest.raises(ValueError):
        RestoreConfig(steps=0)


def test_training_masks_are_valid():
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = training_known(16, 16, rng)
        assert k.shape == (16, 16) and (~k).any()
    d = dispersed_known(16, 16, 0.5, rng)
    assert d.sum() == 128


@pytest.mark.parametrize("latent_dim", [0, 3])
def test_maskgit_training_step_reduces_loss(latent_dim):
    from models.train_maskgit import latent_loss

    torch.manual_seed(0)
    m = MaskGIT(MaskGITConfig(codebook_size=16, dim=32, depth=1, heads=2, max_grid=8, latent_dim=latent_dim))
    codebook = torch.nn.functional.normalize(torch.randn(16, 3), dim=1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    ids = torch.randint(0, 16, (4, 8, 8))
    known = torch.rand(4, 8, 8) < 0.5
    inp = torch.where(known, ids, torch.full_like(ids, m.cfg.mask_id))
    ce, lat_err = [], []
    for _ in range(20):
        logits, lat = m.forward_both(inp)
        loss = masked_ce(logits, ids, ~known)
        ce.append(loss.item())
        if lat is not None:  # the code-vector head trains towards the true codes
            err = latent_loss(lat, ids, ~known, codebook)
            loss = loss + err
            lat_err.append(err.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ce[-1] < ce[0]
    assert (lat_err[-1] < lat_err[0] * 0.8) if latent_dim else not lat_err


def test_mmse_pick_chooses_the_code_nearest_the_expected_vector():
    torch.manual_seed(0)
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071], [-1.0, 0.0]])
    model = MaskGIT(MaskGITConfig(codebook_size=4, dim=16, depth=1, heads=2, max_grid=8))
    r = Restorer(model, RestoreConfig(window=4, overlap=0, pick="mmse"), codebook=codebook)
    # Half the mass on code 0 and half on code 1: argmax picks one of them, MMSE picks code 2.
    logits = torch.tensor([[5.0, 5.0, -20.0, -20.0]])
    assert int(r._pick(logits, torch.Generator())[0]) == 2
    r_arg = Restorer(model, RestoreConfig(window=4, overlap=0, pick="argmax"), codebook=codebook)
    assert int(r_arg._pick(logits, torch.Generator())[0]) in (0, 1)


def make_latent(**kw):
    torch.manual_seed(0)
    cfg = MaskGITConfig(codebook_size=32, dim=32, depth=1, heads=2, max_grid=16, latent_dim=4)
    return Restorer(MaskGIT(cfg), RestoreConfig(window=8, overlap=2, **kw))


@pytest.mark.parametrize("mode", ["reveal", "first"])
def test_regressed_latents_cover_exactly_the_unknown_cells(mode):
    r = make_latent(latents=mode, steps=3)
    rng = np.random.default_rng(4)
    grids = [rng.integers(0, 32, (20, 13)), rng.integers(0, 32, (5, 6))]
    known = [rng.random(g.shape) < 0.4 for g in grids]
    tokens, lats = r.restore_with_latents(grids, known, seed=1)
    for g, k, t, lat in zip(grids, known, tokens, lats):
        assert lat is not None and lat.shape == (*g.shape, 4)
        assert np.isfinite(lat[~k]).all()  # every restored cell got a code vector
        assert np.isnan(lat[k]).all()  # known cells keep their true code
        assert (t[k] == g[k]).all()
    # The token grid does not depend on whether latents are read out.
    plain = Restorer(r.model, RestoreConfig(window=8, overlap=2, steps=3, latents="tokens"))
    assert all((a == b).all() for a, b in zip(plain.restore(grids, known, seed=1), tokens))
    assert all(x is None for x in plain.restore_with_latents(grids, known, seed=1)[1])


def test_bad_latents_mode_is_refused():
    with pytest.raises(ValueError, match="latents"):
        RestoreConfig(latents="soft")


def test_interpolation_prior_starts_the_latent_head_at_a_weighted_mean_of_known_codes():
    torch.manual_seed(0)
    cfg = MaskGITConfig(codebook_size=16, dim=32, depth=1, heads=2, max_grid=8, latent_dim=3, interp_sigma=1.0)
    m = MaskGIT(cfg)
    m.set_codebook(torch.randn(16, 3))
    ids = torch.randint(0, 16, (2, 8, 8))
    ids[0, :, :4] = cfg.mask_id  # a masked half: far cells still get a (weaker) estimate
    _, lat = m.forward_both(ids)
    known = ids != cfg.mask_id
    assert torch.allclose(lat[known], m.codebook[ids[known]])  # head starts at zero: prior only
    norms = lat[~known].norm(dim=-1)
    assert bool((norms <= 1 + 1e-5).all()) and bool((norms > 0).all())
    # Untouched by the prior: a model without interpolation has no codebook buffer.
    assert "codebook" not in MaskGIT(MaskGITConfig(codebook_size=16, dim=32, depth=1, heads=2, latent_dim=3)).state_dict()
    with pytest.raises(ValueError):
        MaskGIT(MaskGITConfig(codebook_size=16, dim=32, depth=1, heads=2)).set_codebook(torch.randn(16, 3))
