"""Halton-scheduled MaskGIT restoration of masked and lost tokens, tiled for any grid size.

Built from parts passed in (a trained ``MaskGIT`` and a ``RestoreConfig``); the schedule and
ordering are pure helpers in ``models.halton``. At each step every image is cut into overlapping
windows the transformer was trained on, all windows of all images go through the model in one
batch, and each cell takes its logits from the window it sits most centrally in. Then the next
Halton-ordered slice of each image's unknown cells is fixed. Known cells are never touched and
the mask id can never be produced (the head has no output for it).

A model conditioned on tokenizer v2's coarse layer (``MaskGITConfig.coarse_channels``) also gets
each image's coarse values: upsampled to the fine grid once per image, then cut into exactly the
same windows as the token grid, so a window's coarse values are those under its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.halton import masked_halton_order, reveal_counts
from models.maskgit import MaskGIT, coarse_to_fine


@dataclass(frozen=True)
class RestoreConfig:
    steps: int = 8
    temperature: float = 0.0  # 0: greedy (best PSNR); >0: sample
    top_k: int = 0  # 0: no top-k filtering
    window: int = 16
    overlap: int = 4
    max_tiles_per_batch: int = 64
    # "argmax": the most likely token. "mmse": the codebook entry nearest the probability-weighted
    # mean code, which minimises expected error in code space (and so, roughly, in pixels) when
    # the model is unsure between similar-looking tokens. Needs the tokenizer's codebook.
    pick: str = "mmse"
    # Pixels of restored cells: "reveal" decodes the code vector the model regressed for a cell in
    # the pass that fixed its token (when the model has a latent head), "first" the one from the
    # first pass (known tokens only), "tokens" the fixed token's own code vector. The regressed
    # vector is the model's estimate of the mean code, which decodes to fewer pixel errors than
    # any single guessed token; the token grid returned is the same either way.
    latents: str = "reveal"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 <= self.overlap < self.window:
            raise ValueError(f"overlap must be in [0, window), got {self.overlap}")
        if self.pick not in ("argmax", "mmse"):
            raise ValueError(f"pick must be 'argmax' or 'mmse', got {self.pick!r}")
        if self.latents not in ("reveal", "first", "tokens"):
            raise ValueError(f"latents must be 'reveal', 'first' or 'tokens', got {self.latents!r}")


def tile_starts(size: int, window: int, overlap: int) -> list[int]:
    """Window start offsets covering [0, size) with at least ``overlap`` cells shared."""
    if size <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def owner_map(h: int, w: int, ys: list[int], xs: list[int], win_h: int, win_w: int) -> np.ndarray:
    """For each cell, the tile index (row-major over ys x xs) whose centre is nearest."""
    cy = np.array([y + (win_h - 1) / 2 for y in ys])
    cx = np.array([x + (win_w - 1) / 2 for x in xs])
    gy = np.abs(np.arange(h)[:, None] - cy[None, :]).argmin(axis=1)
    gx = np.abs(np.arange(w)[:, None] - cx[None, :]).argmin(axis=1)
    return gy[:, None] * len(xs) + gx[None, :]


class Restorer:
    """restore(indices, known) -> indices, batched over images and tiles."""

    def __init__(self, model: MaskGIT, cfg: RestoreConfig | None = None, device: str | torch.device = "cpu",
                 codebook: torch.Tensor | None = None):
        self.model = model.eval().to(device)
        self.cfg = cfg or RestoreConfig()
        self.device = torch.device(device)
        # Unit-length code vectors (K, D) of the tokenizer, for the "mmse" pick.
        self.codebook = None if codebook is None else torch.nn.functional.normalize(codebook.float(), dim=1).to(device)
        self.mask_id = model.cfg.mask_id
        if self.cfg.window > model.cfg.max_grid:
            raise ValueError(f"window {self.cfg.window} exceeds the model's max_grid {model.cfg.max_grid}")

    def _pick(self, logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.cfg.temperature == 0:
            if self.cfg.pick == "mmse" and self.codebook is not None:
                mean = torch.softmax(logits.float(), dim=-1) @ self.codebook
                return (mean @ self.codebook.t()).argmax(dim=-1)
            return logits.argmax(dim=-1)
        logits = logits / self.cfg.temperature
        if self.cfg.top_k:
            kth = torch.topk(logits, min(self.cfg.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits.float().cpu(), dim=-1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1).to(logits.device)

    @property
    def regresses_latents(self) -> bool:
        # Models driven through an adapter (public checkpoints) have no latent head.
        return getattr(self.model, "latent_head", None) is not None and self.cfg.latents != "tokens"

    @property
    def coarse_channels(self) -> int:
        return int(getattr(self.model.cfg, "coarse_channels", 0))

    def restore(self, grids: list[np.ndarray], known: list[np.ndarray], seed: int = 0,
                coarse: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Fill the unknown cells of each (h, w) int grid; cells where ``known`` is True are kept."""
        return self.restore_with_latents(grids, known, seed, coarse)[0]

    def _fine_coarse(self, grids: list[np.ndarray], coarse: list[np.ndarray] | None) -> list[torch.Tensor | None]:
        """Per image, the coarse values (C, hc, wc) on its fine grid (C, h, w), or None (v1 model)."""
        c = self.coarse_channels
        if not c:
            if coarse is not None:
                raise ValueError("this restorer's model takes no coarse layer; pass coarse=None")
            return [None] * len(grids)
        if coarse is None or len(coarse) != len(grids):
            raise ValueError(f"this restorer's model is conditioned on a {c}-channel coarse layer: pass one "
                             "(C, ceil(h/2), ceil(w/2)) array of coarse values per grid (zeros where none arrived)")
        out: list[torch.Tensor | None] = []
        for i, (g, v) in enumerate(zip(grids, coarse)):
            v = np.asarray(v, dtype=np.float32)
            if v.ndim != 3 or v.shape[0] != c:
                raise ValueError(f"image {i}: coarse values {v.shape}, expected ({c}, hc, wc)")
            t = torch.from_numpy(np.ascontiguousarray(v))[None].to(self.device)
            out.append(coarse_to_fine(t, *np.shape(g))[0])
        return out

    @torch.no_grad()
    def restore_with_latents(self, grids: list[np.ndarray], known: list[np.ndarray], seed: int = 0,
                             coarse: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Restored token grids and, when the model regresses code vectors, a (h, w, D) float32
        array per image holding its estimate at unknown cells (known cells: NaN, so a caller can
        never mistake them for the true code). ``coarse``: per image the (C, ceil(h/2),
        ceil(w/2)) coarse *values* for a model conditioned on them, else None."""
        if len(grids) != len(known):
            raise ValueError("grids and known masks differ in number")
        cfg = self.cfg
        cur, plans = [], []
        for i, (g, k) in enumerate(zip(grids, known)):
            if g.shape != k.shape or g.ndim != 2:
                raise ValueError(f"image {i}: grid {g.shape} and mask {k.shape} must be equal 2-D shapes")
            k = k.astype(bool)
            ids = np.where(k, g, self.mask_id).astype(np.int64)
            unknown = ~k
            order = masked_halton_order(unknown)
            counts = reveal_counts(len(order), cfg.steps)
            plans.append({"order": order, "counts": counts, "done": 0, **self._tiling(*g.shape),
                          "gen": torch.Generator().manual_seed(seed * 1000003 + i)})
            cur.append(ids)
        fine_coarse = self._fine_coarse(grids, coarse)
        want_lat = self.regresses_latents
        lats: list[np.ndarray | None] = [
            np.full((*g.shape, self.model.cfg.latent_dim), np.nan, dtype=np.float32) if want_lat else None
            for g in grids]
        n_steps = max((len(p["counts"]) for p in plans), default=0)
        for step in range(n_steps):
            active = [i for i, p in enumerate(plans) if step < len(p["counts"])]
            # "first" reads code vectors from the first pass only; later passes need just logits.
            read = want_lat and (self.cfg.latents == "reveal" or step == 0)
            logits, latents = self._window_logits([cur[i] for i in active], [plans[i] for i in active], read,
                                                  [fine_coarse[i] for i in active])
            for i, lg, lt in zip(active, logits, latents):
                p = plans[i]
                if step == 0 and lt is not None and self.cfg.latents == "first":
                    unk = cur[i] == self.mask_id
                    lats[i][unk] = lt.cpu().numpy()[unk]  # type: ignore[index]
                sel = p["order"][p["done"] : p["done"] + p["counts"][step]]
                p["done"] += len(sel)
                ys, xs = np.divmod(sel, cur[i].shape[1])
                picked = self._pick(lg[torch.from_numpy(ys), torch.from_numpy(xs)], p["gen"])
                cur[i][ys, xs] = picked.cpu().numpy()
                if lt is not None and self.cfg.latents == "reveal":
                    lats[i][ys, xs] = lt[torch.from_numpy(ys), torch.from_numpy(xs)].cpu().numpy()  # type: ignore[index]
        out = []
        for g, k, c in zip(grids, known, cur):
            res = np.where(k.astype(bool), g, c).astype(np.int64)  # known cells are never overwritten
            out.append(res)
        return out, lats

    @torch.no_grad()
    def logits(self, ids: np.ndarray, coarse: np.ndarray | None = None) -> torch.Tensor:
        """One model pass over a (h, w) grid holding ``mask_id`` at unknown cells -> (h, w, K)."""
        ids = np.asarray(ids, dtype=np.int64)
        fc = self._fine_coarse([ids], None if coarse is None else [coarse])
        return self._window_logits([ids], [self._tiling(*ids.shape)], False, fc)[0][0]

    def _tiling(self, h: int, w: int) -> dict:
        wh, ww = min(self.cfg.window, h), min(self.cfg.window, w)
        ys, xs = tile_starts(h, wh, self.cfg.overlap), tile_starts(w, ww, self.cfg.overlap)
        return {"ys": ys, "xs": xs, "win": (wh, ww), "owner": owner_map(h, w, ys, xs, wh, ww)}

    def _window_logits(self, ids: list[np.ndarray], plans: list[dict], with_latents: bool,
                       coarse: list[torch.Tensor | None] | None = None,
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Per image, (h, w, K) logits (and, ``with_latents``, the (h, w, D) regressed code
        vectors) assembled from its windows; windows of all images batched. ``coarse``: per image
        (C, h, w) coarse values on the fine grid, windowed like the tokens."""
        coarse = coarse if coarse is not None else [None] * len(ids)
        groups: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
        for j, p in enumerate(plans):
            for a, y in enumerate(p["ys"]):
                for b, x in enumerate(p["xs"]):
                    groups.setdefault(p["win"], []).append((j, a * len(p["xs"]) + b, y, x))
        out = [torch.empty(g.shape[0], g.shape[1], self.model.cfg.codebook_size, device=self.device) for g in ids]
        d = self.model.cfg.latent_dim if with_latents else 0
        lat_out: list[torch.Tensor | None] = [
            torch.empty(g.shape[0], g.shape[1], d, device=self.device) if d else None for g in ids]
        for (wh, ww), tiles in groups.items():
            for s in range(0, len(tiles), self.cfg.max_tiles_per_batch):
                chunk = tiles[s : s + self.cfg.max_tiles_per_batch]
                batch = np.stack([ids[j][y : y + wh, x : x + ww] for j, _, y, x in chunk])
                inp = torch.from_numpy(batch).to(self.device)
                cw = None
                if coarse[chunk[0][0]] is not None:
                    cw = torch.stack([coarse[j][:, y : y + wh, x : x + ww] for j, _, y, x in chunk])  # type: ignore[index]
                if cw is None:  # keep the one-argument call: public adapters take no coarse layer
                    lg, lt = self.model.forward_both(inp) if d else (self.model(inp), None)
                else:
                    lg, lt = self.model.forward_both(inp, cw) if d else (self.model(inp, cw), None)
                for n, (j, t, y, x) in enumerate(chunk):
                    own = torch.from_numpy(plans[j]["owner"][y : y + wh, x : x + ww] == t).to(self.device)
                    region = out[j][y : y + wh, x : x + ww]
                    region[own] = lg[n][own]
                    lat_j = lat_out[j]
                    if lat_j is not None and lt is not None:
                        lat_region = lat_j[y : y + wh, x : x + ww]
                        lat_region[own] = lt[n][own]
        return out, lat_out
