"""The torch side of an export: which module each exported model wraps, and its weights' identity.

A source is read from the bytes of its safetensors file in one go, so the sha256 that keys the
cache is the sha256 of exactly the weights exported even while training rewrites the file.
``--random-init`` builds the same architectures from a fixed seed (tests, CI without weights).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from models.maskgit import MaskGIT, MaskGITConfig
from models.registry import ModelNotFound, files_for
from models.scorer import Scorer, ScorerConfig
from models.tokenizer import DecoderExport, EncoderExport, TokenizerConfig, VQTokenizer
from models.tokenizer2 import Encoder2Export, Tokenizer2Config, TwoLayerTokenizer

SEED = 0
MASKGIT_WINDOW = 16  # the cloud restores 16x16 token windows; the exported step is fixed to it
RANDOM_MASKGIT = MaskGITConfig(depth=2, dim=64, heads=4)  # as models.codec.load_maskgit(random_init=True)

# model name -> (registry file attribute, edge or cloud)
WEIGHTS = {"encoder": "tokenizer", "encoder2": "tokenizer", "encoder2fast": "fast_encoder", "decoder": "tokenizer",
           "scorer": "scorer", "maskgit": "maskgit"}
KIND = {"encoder": "edge", "encoder2": "edge", "encoder2fast": "edge", "scorer": "edge", "segmenter": "edge", "detector": "edge", "decoder": "cloud",
        "maskgit": "cloud"}
# Models that belong to one tokenizer id whatever --tokenizer-id says: the two-layer edge encoder
# (fine ids + coarse levels) is tokenizer v2's, ``tc-vq2-f16c-f8``.
TOKENIZER_OF = {"encoder2": 3, "encoder2fast": 3}
# Tokenizer v2's edge encoders: the full one and the light one distilled from it (models.fast_encoder)
TWO_LAYER_ENCODERS = ("encoder2", "encoder2fast")
# Graphs that end in a nearest-code pick: float32 tails in FP16, code-agreement targets in INT8.
CODE_PICKERS = ("encoder", "encoder2", "encoder2fast")


@dataclass
class Source:
    name: str
    module: nn.Module  # what torch.onnx.export traces; eval mode
    sha256: str
    path: str | None  # None for --random-init
    tokenizer: VQTokenizer | TwoLayerTokenizer | None = None  # encoders/decoder: for the validation report

    @property
    def random_init(self) -> bool:
        return self.path is None


def _metadata(blob: bytes) -> dict:
    (n,) = struct.unpack("<Q", blob[:8])
    meta = json.loads(blob[8 : 8 + n]).get("__metadata__", {}) or {}
    return {k: json.loads(v) for k, v in meta.items()}


def _read(weights: str, tokenizer_id: int, root: Path | None) -> tuple[dict, dict, str, str]:
    path = files_for(tokenizer_id).path(weights, root)
    if not path.is_file():
        raise ModelNotFound(f"{weights} weights missing: {path} (train them, or pass --random-init)")
    blob = path.read_bytes()
    return load_safetensors(blob), _metadata(blob), hashlib.sha256(blob).hexdigest(), str(path)


def _random_sha(name: str, config: object) -> str:
    return hashlib.sha256(f"random-init seed={SEED} {name} {config!r} torch={torch.__version__}".encode()).hexdigest()


def load_source(name: str, *, random_init: bool = False, tokenizer_id: int = 1, root: Path | None = None) -> Source:
    """The eval-mode torch module behind exported model ``name`` and its weights' sha256."""
    weights = WEIGHTS[name]
    tokenizer_id = TOKENIZER_OF.get(name, tokenizer_id)
    torch.manual_seed(SEED)
    if random_init:
        state, meta, sha, path = None, {}, "", None
    else:
        state, meta, sha, path = _read(weights, tokenizer_id, root)
    if name == "encoder2fast":
        return _fast_encoder_source(state, meta, sha, path, random_init, root)
    if name == "encoder2":
        cfg2 = Tokenizer2Config.from_dict(meta["config"]) if meta else Tokenizer2Config()
        tok2 = TwoLayerTokenizer(cfg2)
        if state is not None:
            tok2.load_state_dict(state)
        tok2.eval()
        return Source(name, Encoder2Export(tok2).eval(), sha or _random_sha(weights, cfg2), path, tok2)
    if weights == "tokenizer":
        tok_cfg = TokenizerConfig.from_dict(meta["config"]) if meta else TokenizerConfig()
        tok = VQTokenizer(tok_cfg)
        if state is not None:
            tok.load_state_dict(state)
        tok.eval()
        module: nn.Module = EncoderExport(tok) if name == "encoder" else DecoderExport(tok)
        return Source(name, module.eval(), sha or _random_sha(weights, tok_cfg), path, tok)
    if weights == "scorer":
        s_cfg = ScorerConfig.from_dict(meta["config"]) if meta else ScorerConfig()
        scorer = Scorer(s_cfg)
        if state is not None:
            scorer.load_state_dict(state)
        return Source(name, scorer.eval(), sha or _random_sha(weights, s_cfg), path)
    m_cfg = MaskGITConfig.from_dict(meta["config"]) if meta else RANDOM_MASKGIT
    mg = MaskGIT(m_cfg)
    if state is not None:
        mg.load_state_dict(state)
    return Source(name, mg.eval(), sha or _random_sha(weights, m_cfg), path)


def _fast_encoder_source(state: dict | None, meta: dict, sha: str, path: str | None, random_init: bool,
                         root: Path | None) -> Source:
    """The light encoder with tokenizer v2's codebook and FSQ (from the tokenizer's own file), and
    that tokenizer for the validation report (decoding the ids it picks)."""
    from models.fast_encoder import FastEncoder, FastEncoderConfig, FastEncoderExport

    if random_init:
        tok2 = TwoLayerTokenizer(Tokenizer2Config())
    else:
        t_state, t_meta, _, _ = _read("tokenizer", 3, root)
        tok2 = TwoLayerTokenizer(Tokenizer2Config.from_dict(t_meta["config"]))
        tok2.load_state_dict(t_state)
    tok2.eval()
    cfg = FastEncoderConfig.from_dict(meta["config"]) if meta else FastEncoderConfig()
    enc = FastEncoder(cfg)
    if state is not None:
        enc.load_state_dict(state)
    module = FastEncoderExport(enc.eval(), tok2.quantizer.normalized_codebook().detach(), tok2.fsq).eval()
    return Source("encoder2fast", module, sha or _random_sha("fast_encoder", cfg), path, tok2)


def codebook_size(source: Source) -> int:
    if isinstance(source.tokenizer, TwoLayerTokenizer):
        return source.tokenizer.cfg.fine.codebook_size
    if source.tokenizer is not None:
        return source.tokenizer.cfg.codebook_size
    if isinstance(source.module, MaskGIT):
        return source.module.cfg.codebook_size
    raise ValueError(f"{source.name} has no codebook")
