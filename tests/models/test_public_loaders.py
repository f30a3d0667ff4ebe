"""Public checkpoint loaders: random weights of the published shapes, saved in the published containers.

No real checkpoint is downloaded: each model is built at its documented size with random weights,
saved the way its project saves it (LlamaGen ``{"model": sd, "args": Namespace}``, Halton-MaskGIT
``{"model_state_dict": sd, "iter": ...}``), and loaded back strictly through our loaders. Forward
passes stay on tiny inputs so the file runs in seconds on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from link.tokenizers import get_tokenizer  # noqa: E402
from models.public import (  # noqa: E402
    LLAMAGEN_TOKENIZER_ID,
    CheckpointError,
    CheckpointMismatch,
    HaltonMaskGIT,
    HaltonMaskGITConfig,
    HaltonRestoreAdapter,
    LlamaGenVQ,
    LlamaGenVQConfig,
    UnknownPublicModel,
    get_public_model,
    load_halton_maskgit,
    load_llamagen_vq,
    load_public,
)
from models.public.checkpoint import load_exact, read_state_dict  # noqa: E402
from models.public.halton_maskgit import infer_config  # noqa: E402
from models.public.llamagen_vq import Quantizer  # noqa: E402
from models.restore import RestoreConfig, Restorer  # noqa: E402

K = 16384


class NotAllowed:
    """A class that weights-only loading must refuse to unpickle."""


@pytest.fixture(scope="module")
def vq_file(tmp_path_factory) -> tuple[Path, LlamaGenVQ]:
    torch.manual_seed(0)
    model = LlamaGenVQ().eval()
    path = tmp_path_factory.mktemp("llamagen") / "vq_ds16_c2i.pt"
    torch.save({"model": model.state_dict(), "steps": 400_000, "args": argparse.Namespace(image_size=256)}, path)
    return path, model


@pytest.fixture(scope="module")
def vq(vq_file) -> LlamaGenVQ:
    return load_llamagen_vq(vq_file[0])


@pytest.fixture(scope="module")
def halton_file(tmp_path_factory) -> tuple[Path, HaltonMaskGIT]:
    torch.manual_seed(1)
    model = HaltonMaskGIT(HaltonMaskGITConfig.variant("tiny")).eval()
    # Random adaLN weights (the project zero-inits them) so the class embedding matters.
    for block in model.transformer.layers:
        torch.nn.init.normal_(block.mlp[1].weight, std=0.02)
    path = tmp_path_factory.mktemp("halton") / "ImageNet_256_tiny.pth"
    torch.save({"iter": 1_500_000, "global_epoch": 300, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": None}, path)
    return path, model


@pytest.fixture(scope="module")
def halton(halton_file) -> HaltonMaskGIT:
    return load_halton_maskgit(halton_file[0])


# --- LlamaGen VQ-16 -----------------------------------------------------------------------------

def test_vq_loads_strictly_and_round_trips_shapes(vq_file, vq):
    _, original = vq_file
    assert sum(p.numel() for p in vq.parameters()) == sum(p.numel() for p in original.parameters())
    for key, tensor in original.state_dict().items():
        assert torch.equal(vq.state_dict()[key], tensor), key
    image = torch.rand(1, 3, 20, 30)  # not a multiple of 16: padded to 32x32
    idx = vq.encode(image)
    assert idx.shape == (1, 2, 2) and idx.dtype == torch.int64
    assert 0 <= int(idx.min()) and int(idx.max()) < K
    out = vq.decode(idx, size=(20, 30))
    assert out.shape == (1, 3, 20, 30)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_vq_codes_are_their_own_nearest_code():
    torch.manual_seed(2)
    q = Quantizer(LlamaGenVQConfig())
    idx = torch.randint(0, K, (2, 3, 5))
    assert torch.equal(q.indices(q.lookup(idx) * 3.0), idx)  # scale-free: the search is cosine


def test_vq_rejects_bad_inputs(vq):
    with pytest.raises(ValueError, match=r"\[0, 16384\)"):
        vq.decode(torch.full((1, 2, 2), K))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        vq.encode(torch.rand(3, 32, 32))


# --- Halton-MaskGIT -----------------------------------------------------------------------------

def test_halton_infers_tiny_and_ties_the_head(halton_file, halton):
    assert halton.cfg == HaltonMaskGITConfig(hidden_dim=384, depth=6, heads=6, codebook_size=K,
                                             input_size=16, nclass=1000, register=1)
    assert halton.head.weight is halton.tok_emb.weight
    assert torch.equal(halton.cls_emb.weight, halton_file[1].cls_emb.weight)
    assert (halton.cfg.mask_id, halton.cfg.null_class, halton.cfg.max_grid) == (K, 1000, 16)


def test_halton_logits_shapes_null_class_and_padding(halton):
    torch.manual_seed(3)
    small = torch.randint(0, K, (1, 4, 5))
    small[0, 1, 2] = K
    padded = torch.full((2, 16, 16), K)  # what logits() builds for a 4x5 grid
    padded[:, :4, :5] = small
    with torch.no_grad():
        full = halton(padded, torch.tensor([1000, 3]))  # null class, then class 3
    assert full.shape == (2, 16, 16, K + 1)
    logits = halton.logits(small)  # no label: the null class
    assert logits.shape == (1, 4, 5, K)
    # Batch 1 against batch 2: equal up to float reassociation.
    torch.testing.assert_close(logits[0], full[0, :4, :5, :K], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(full[0], full[1])  # the class embedding is used
    with pytest.raises(ValueError, match="tile it"):
        halton.logits(torch.zeros(1, 17, 16, dtype=torch.long))


def test_adapter_restores_inside_restorer_and_keeps_known_tokens(halton):
    restorer = Restorer(HaltonRestoreAdapter(halton), RestoreConfig(steps=2))
    rng = np.random.default_rng(4)
    grid = rng.integers(0, K, (4, 4))
    known = rng.random((4, 4)) < 0.5
    known[0, 0], known[3, 3] = True, False
    (out,) = restorer.restore([grid], [known])
    assert out.shape == (4, 4)
    np.testing.assert_array_equal(out[known], grid[known])
    assert ((out >= 0) & (out < K)).all()


def test_halton_size_is_checked_against_the_file(halton_file):
    sd = halton_file[1].state_dict()
    assert infer_config(sd, size="tiny").depth == 6
    with pytest.raises(CheckpointError, match="holds a tiny model, expected base"):
        infer_config(sd, size="base")
    with pytest.raises(ValueError, match="valid: auto, tiny, small"):
        load_halton_maskgit(halton_file[0], size="huge")


def test_infer_config_reads_registers_and_grid(halton_file):
    sd = {k: v for k, v in halton_file[1].state_dict().items() if k != "reg_tokens.weight"}
    assert infer_config(sd).register == 0
    sd["pos_emb.weight"] = torch.zeros(24 * 24, 384)  # an ImageNet-384 checkpoint
    assert infer_config(sd).max_grid == 24


# --- errors, containers, registry ---------------------------------------------------------------

@pytest.mark.parametrize("loader", [load_llamagen_vq, load_halton_maskgit])
def test_corrupt_files_raise_checkpoint_error(tmp_path, halton_file, loader):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(5).bytes(4096))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(halton_file[0].read_bytes()[:100_000])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (garbage, truncated, empty):
        with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
            loader(path)
    with pytest.raises(FileNotFoundError):
        loader(tmp_path / "absent.pt")


def test_wrong_keys_are_named(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointMismatch, match=r"unexpected keys: foo\.weight") as err:
        load_llamagen_vq(path)
    assert err.value.unexpected == ["foo.weight"] and "quant_conv.weight" in err.value.missing
    torch.save({"model_state_dict": {"foo.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointMismatch, match="tok_emb.weight"):
        load_halton_maskgit(path)
    torch.save({"optimizer": {}}, path)
    with pytest.raises(CheckpointError, match="no state dict under any of"):
        load_llamagen_vq(path)


def test_wrong_shapes_are_named():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointMismatch, match=r"weight \(2, 4\) \(expected \(2, 3\)\)") as err:
        load_exact(model, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "x.pt")
    assert err.value.mismatched == [("weight", (2, 4), (2, 3))] and not err.value.missing


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": NotAllowed()}, path)
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_llamagen_vq(path)


def test_wrapper_prefixes_are_stripped(tmp_path):
    path = tmp_path / "ddp.pt"
    torch.save({"model_state_dict": {"module._orig_mod.a": torch.ones(1)}}, path)
    assert list(read_state_dict(path, ["model_state_dict"])) == ["a"]


def test_registry_names_loaders_and_wire_id(tmp_path):
    spec = get_tokenizer(LLAMAGEN_TOKENIZER_ID)
    cfg = LlamaGenVQConfig()
    assert (spec.name, spec.codebook_size, spec.factor) == ("llamagen-vq-ds16-c2i", cfg.codebook_size, cfg.factor)
    assert get_public_model("llamagen-vq-ds16-c2i").loader is load_llamagen_vq
    assert get_public_model("halton-maskgit-imagenet256").loader is load_halton_maskgit
    path = tmp_path / "other.pth"
    torch.save({"model_state_dict": {"foo.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointMismatch, match="not a Halton-MaskGIT"):  # dispatched by name
        load_public("halton-maskgit-imagenet256", path)
    with pytest.raises(UnknownPublicModel, match="valid: llamagen-vq-ds16-c2i, halton-maskgit-imagenet256"):
        get_public_model("maskgit")
