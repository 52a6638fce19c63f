"""The text-only ceiling on NegWorld's balanced negation pairs: what the frozen vision tower
allows a text encoder to reach.

A balanced pair is a query q, the image I it is true of and a foil F (the same scene with the
negated object put in). With unit image embeddings fixed, a text vector t picks the right image
iff ``t . (I - F) > 0``; a text encoder only chooses t, and it can only choose it from what the
query says. So we fit the best rule "query -> one vector" we can, on pairs from TRAIN scenes,
and measure it on the test pairs:

- ``query-features``: ``t = W phi(q)``, where ``phi`` holds what the query states: the negated
  shape (one-hot), the shapes, colours, sizes and parts it names as present, and a constant.
  Every such rule is a function of the text, so some text encoder could output it.
- ``negated-object``: ``phi`` = the negated shape only: one vector per negated shape (a text
  encoder that reads "no N" perfectly and nothing else).
- ``mean-direction``: that vector taken as the mean of ``I - F`` over the train pairs (no fit).
- ``negated-object-oracle``: one vector per negated shape fitted on the TEST pairs themselves:
  an in-sample reference for that family (no test labels are used by the other rows).

W is fitted by L2-regularised logistic regression on ``t . (I - F)`` (the loss of picking the
foil), the L2 strength chosen on pairs from VAL scenes. Train and val pairs are made exactly as
the test pairs are (``negworld.export._make_pairs``, their own random stream), their foils
rendered in memory. ``ceiling`` is the test accuracy of the row fitted without test labels,
the row picked by its val accuracy (so no test label chooses it either). It estimates,
not proves, a bound: a richer rule could do better, but these rules see
everything a query says about the image.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ..data.negworld import WorldConfig, WorldExport, load_negation_pairs, load_scenes, render
from ..data.negworld.export import _make_pairs
from ..data.negworld.scenes import Scene, scene_rng
from ..data.negworld.vocab import CATEGORIES, COLORS, PARTS, SIZES, plural
from ..models import ClipBundle, ImageEmbeddingCache, encode_text
from ..utils import NegationClipError, progress
from .images import embed_keys, load_whole
from .metrics import pairwise_accuracy
from .negrefcocog import _model_name


@dataclass
class CeilingConfig:
    """How the ceiling is fitted (recorded in the result)."""
    max_train_pairs: int = 0  # 0: every pair the train scenes give
    l2_grid: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    max_iter: int = 300  # L-BFGS iterations per fit
    batch_size: int = 256  # image encoding batch
    threads: int = 0  # torch threads while fitting (0: leave as is)


# --- what a query states --------------------------------------------------------------------

_COLOR_NAMES = tuple(sorted(COLORS))
_PART_WORDS = {"dot": r"\bdot\b", "border": r"\b(?:border|outline|outlined)\b"}
_WORD = {c: re.compile(rf"\b(?:{re.escape(c)}|{re.escape(plural(c))})\b", re.I) for c in CATEGORIES}


def query_features(text: str, negated: str) -> list[float]:
    """phi(q): negated shape (one-hot), named shapes, colours, sizes, parts, and a constant 1."""
    low = text.lower()
    neg = [float(c == negated) for c in CATEGORIES]
    named = [float(c != negated and _WORD[c].search(low) is not None) for c in CATEGORIES]
    cols = [float(re.search(rf"\b{c}\b", low) is not None) for c in _COLOR_NAMES]
    sizes = [float(re.search(rf"\b{s}\b", low) is not None) for s in SIZES]
    parts = [float(re.search(_PART_WORDS[p], low) is not None) for p in PARTS]
    return neg + named + cols + sizes + parts + [1.0]


def negated_features(negated: str) -> list[float]:
    return [float(c == negated) for c in CATEGORIES]


# --- fitting --------------------------------------------------------------------------------

def _design(phi: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """Rows vec(phi_i (x) d_i): then w . row = phi_i^T W d_i with W reshaped (k, dim)."""
    return (phi[:, :, None] * diff[:, None, :]).reshape(len(phi), -1)


def fit_direction(x: torch.Tensor, l2: float, max_iter: int = 300) -> torch.Tensor:
    """argmin_w mean(softplus(-x w)) + l2 |w|^2: the logistic loss of preferring the foil."""
    x = x.to(torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(x @ w)).mean() + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _acc(scores: torch.Tensor) -> dict:
    r = pairwise_accuracy(scores, torch.zeros_like(scores))
    return {"accuracy": r["accuracy"], "correct": r["correct"], "ties": r["ties"], "total": r["total"]}


@dataclass
class _Pairs:
    texts: list[str]
    negated: list[str]
    heldout: list[bool]
    diff: torch.Tensor  # (n, dim): I - F, unit image embeddings


def _train_pairs(scenes: list[Scene], cfg: WorldConfig, split: str, limit: int) -> list[tuple]:
    out = []
    next_id = 10 ** 9  # foil ids never collide with the export's
    for sc in scenes:
        if sc.split != split or sc.role != "scene":
            continue
        for pair, foil in _make_pairs(sc, cfg, next_id, scene_rng(cfg.seed, sc.id, "ceiling")):
            next_id += 1
            out.append((pair, sc, foil))
        if limit and len(out) >= limit:
            break
    return out[:limit] if limit else out


def _embed_rendered(bundle: ClipBundle, made: list[tuple], cfg: WorldConfig, batch_size: int,
                    desc: str) -> _Pairs:
    from ..models.encode import encode_pixels

    n = len(made)
    diff = torch.empty((n, bundle.embed_dim), dtype=torch.float32)
    bar = progress(total=n, desc=desc, unit="pair", disable=None if n > batch_size else True)
    for s in range(0, n, batch_size):
        chunk = made[s: s + batch_size]
        ims = [render(sc, cfg.supersample) for _, sc, _ in chunk] + \
              [render(f, cfg.supersample) for _, _, f in chunk]
        e = encode_pixels(bundle, bundle.transform(ims), normalize=True).float().cpu()
        diff[s: s + len(chunk)] = e[: len(chunk)] - e[len(chunk):]
        bar.update(len(chunk))
    bar.close()
    return _Pairs([p.text for p, _, _ in made], [p.negated_object for p, _, _ in made],
                  [p.heldout_phrasing for p, _, _ in made], diff)


def _world_config(ex: WorldExport) -> WorldConfig:
    rec = ex.manifest.get("config") or {}
    names = {f.name for f in fields(WorldConfig)}
    return WorldConfig(**{k: v for k, v in rec.items() if k in names})


def text_only_ceiling(bundle: ClipBundle, world: str | os.PathLike, *,
                      cache: ImageEmbeddingCache | None = None,
                      config: CeilingConfig | None = None, model_name: str | None = None,
                      show_progress: bool = True) -> dict:
    """Fit the rows described in the module docstring; returns accuracies on the test pairs."""
    config = config or CeilingConfig()
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        ex = WorldExport.open(world)
        cfg = _world_config(ex)
        scenes = list(load_scenes(ex.scenes).values())
        made_train = _train_pairs(scenes, cfg, "train", config.max_train_pairs)
        made_val = _train_pairs(scenes, cfg, "val", 0)
        if len(made_train) < 20 or len(made_val) < 5:
            raise NegationClipError(
                f"{ex.root}: too few train/val negation pairs to fit a ceiling "
                f"({len(made_train)} train, {len(made_val)} val); build a larger world")
        was_training = bundle.model.training
        bundle.model.eval()
        with torch.no_grad():
            tr = _embed_rendered(bundle, made_train, cfg, config.batch_size, "ceiling train pairs")
            va = _embed_rendered(bundle, made_val, cfg, config.batch_size, "ceiling val pairs")
            test = [p for p in load_negation_pairs(ex.negation_pairs) if p.split == "test"]
            if not test:
                raise NegationClipError(f"{ex.negation_pairs}: no test pairs")
            img = [str(ex.root / p.image) for p in test]
            foil = [str(ex.root / p.foil_image) for p in test]
            emb = embed_keys(bundle, img + foil, load_whole, cache, batch_size=config.batch_size,
                             desc="ceiling test images")
            if emb.failed:
                first = next(iter(sorted(emb.failed.items())))
                raise NegationClipError(f"{ex.root}: {len(emb.failed)} test images missing or "
                                        f"unreadable, e.g. {first[1]}")
            e_img = torch.nn.functional.normalize(emb.rows(img).float(), dim=-1)
            e_foil = torch.nn.functional.normalize(emb.rows(foil).float(), dim=-1)
            te = _Pairs([p.text for p in test], [p.negated_object for p in test],
                        [p.heldout_phrasing for p in test], e_img - e_foil)
            texts = list(dict.fromkeys(te.texts))
            tix = {t: i for i, t in enumerate(texts)}
            temb = encode_text(bundle, texts, show_progress=False)[[tix[t] for t in te.texts]]
            own = (temb.float() * te.diff).sum(-1)
        if was_training:
            bundle.model.train()
        scale = float(tr.diff.norm(dim=1).mean()) or 1.0  # puts the L2 grid on a fixed scale

        def design(p: _Pairs, kind: str) -> torch.Tensor:
            if kind == "query-features":
                phi = torch.tensor([query_features(t, n) for t, n in zip(p.texts, p.negated)])
            else:
                phi = torch.tensor([negated_features(n) for n in p.negated])
            return _design(phi.to(torch.float64), p.diff.to(torch.float64) / scale)

        def summary(x_te: torch.Tensor, w: torch.Tensor, extra: dict) -> dict:
            s = x_te @ w
            held = torch.tensor(te.heldout)
            return {**_acc(s), "heldout_accuracy": _acc(s[held])["accuracy"],
                    "trained_phrasing_accuracy": _acc(s[~held])["accuracy"], **extra}

        rows: dict[str, dict] = {}
        for kind in ("query-features", "negated-object"):
            x_tr, x_va, x_te = design(tr, kind), design(va, kind), design(te, kind)
            best = None
            for l2 in config.l2_grid:
                w = fit_direction(x_tr, l2, config.max_iter)
                v = _acc(x_va @ w)["accuracy"]
                if best is None or v > best[0]:
                    best = (v, l2, w)
            v, l2, w = best
            rows[kind] = summary(x_te, w, {"l2": l2, "val_accuracy": v,
                                           "train_accuracy": _acc(x_tr @ w)["accuracy"],
                                           "features": int(x_tr.shape[1])})
        x_tr, x_te = design(tr, "negated-object"), design(te, "negated-object")
        phi_tr = torch.tensor([negated_features(n) for n in tr.negated], dtype=torch.float64)
        w_mean = (phi_tr.T @ (tr.diff.to(torch.float64) / scale)) / phi_tr.sum(0).clamp(min=1)[:, None]
        x_va = design(va, "negated-object")
        rows["mean-direction"] = summary(x_te, w_mean.reshape(-1), {
            "val_accuracy": _acc(x_va @ w_mean.reshape(-1))["accuracy"],
            "train_accuracy": _acc(x_tr @ w_mean.reshape(-1))["accuracy"]})
        w_or = fit_direction(x_te, min(config.l2_grid), config.max_iter)
        rows["negated-object-oracle"] = summary(x_te, w_or, {"l2": min(config.l2_grid),
                                                             "fitted_on": "test pairs"})
    finally:
        if config.threads:
            torch.set_num_threads(old_threads)
    fitted = {k: v for k, v in rows.items() if k != "negated-object-oracle"}
    best_name = max(fitted, key=lambda k: fitted[k]["val_accuracy"])  # chosen without test labels
    own_acc = _acc(own)
    held = torch.tensor(te.heldout)
    return {"benchmark": "text-only-ceiling", "model": _model_name(bundle, model_name),
            "world": str(ex.root), "test_pairs": len(te.texts), "train_pairs": len(tr.texts),
            "val_pairs": len(va.texts), "embed_dim": bundle.embed_dim,
            "ceiling": fitted[best_name]["accuracy"], "ceiling_scorer": best_name,
            "model_accuracy": own_acc["accuracy"], "model_ties": own_acc["ties"],
            "model_heldout_accuracy": _acc(own[held])["accuracy"],
            "scorers": rows, "config": asdict(config),
            "seconds": time.perf_counter() - t0}


def _f3(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_ceiling(r: dict) -> str:
    """A small Markdown table of the result (``-`` where a subset is empty)."""
    lines = [f"text-only ceiling on {r['world']} ({r['test_pairs']} test pairs; fitted on "
             f"{r['train_pairs']} train pairs, L2 chosen on {r['val_pairs']} val pairs)", "",
             "| scorer | test accuracy | held-out phrasing | val accuracy | fitted on |",
             "|---|---|---|---|---|",
             f"| the model's own text encoder ({r['model']}) | {_f3(r['model_accuracy'])} | "
             f"{_f3(r['model_heldout_accuracy'])} | - | - |"]
    for name, row in r["scorers"].items():
        lines.append(f"| {name} | {_f3(row['accuracy'])} | {_f3(row['heldout_accuracy'])} | "
                     f"{_f3(row.get('val_accuracy'))} | "
                     f"{row.get('fitted_on', 'train pairs')} |")
    lines += ["", f"ceiling: {_f3(r['ceiling'])} ({r['ceiling_scorer']}, the fitted row with the "
                  f"best val accuracy)"]
    return "\n".join(lines)


__all__ = ["CeilingConfig", "text_only_ceiling", "format_ceiling", "query_features",
           "fit_direction"]
