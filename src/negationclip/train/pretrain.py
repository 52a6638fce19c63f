"""Contrastive pretraining of a small CLIP from scratch on a COCO-format captions file.

Why: no real CLIP weights can be downloaded offline, so the tiny NegWorld base model is made
here, the way real CLIP was made: images paired with captions that (like web captions) never
negate. The input is any COCO captions export (``captions_train.json`` + an image folder), so
nothing here knows about NegWorld.

The whole image set is decoded and transformed once into memory (float16): pretraining from
scratch on a CPU only makes sense for small sets, and it keeps each step pure compute. The
job writes a resume state every ``checkpoint_every`` steps and continues from it when re-run
with the same configuration; a resumed run gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..utils import NegationClipError
from ..utils.io import (atomic_write_bytes, atomic_write_json, atomic_write_text, load_json,
                        load_torch_state, torch_bytes)
from ..utils.progress import progress
from .loss import contrastive_loss

STATE_FILE = "pretrain_state.pt"
RECORD_FILE = "PRETRAIN.json"


@dataclass
class PretrainConfig:
    """Model shape and optimisation of a from-scratch CLIP pretraining run."""

    # model (a Hugging Face CLIPModel in the OpenAI layout, real CLIP tokenizer)
    width: int = 128             # text and vision transformer width
    layers: int = 4              # text and vision transformer depth
    image_size: int = 64
    patch_size: int = 8
    embed_dim: int = 128
    # optimisation
    steps: int = 400
    batch_size: int = 256        # images per step, one random caption each
    lr: float = 1e-3
    warmup_steps: int = 40       # linear warm-up, then cosine decay to 0
    weight_decay: float = 0.1         # on weight matrices only (not gains, biases, embeddings)
    max_grad_norm: float | None = 1.0  # clip the global gradient norm (None: no clipping)
    max_logit_scale: float = 100.0
    seed: int = 0
    # runtime
    checkpoint_every: int = 50   # resume state every N steps
    threads: int | None = None   # torch.set_num_threads (None: leave as is)

    def validate(self) -> "PretrainConfig":
        def bad(msg: str):
            raise NegationClipError(f"pretrain config: {msg}")

        if self.steps < 1:
            bad(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 2:
            bad(f"batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}")
        if not self.lr > 0:
            bad(f"lr must be > 0, got {self.lr}")
        if self.image_size % self.patch_size:
            bad(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % 64 and self.width > 64:
            bad(f"width must be a multiple of 64 (heads are width // 64), got {self.width}")
        if self.checkpoint_every < 1:
            bad(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def weights_fingerprint(self) -> dict[str, Any]:
        d = self.to_dict()
        d.pop("checkpoint_every")
        d.pop("threads")
        return d


@dataclass
class PretrainResult:
    out_dir: Path
    steps: int
    final_loss: float
    seconds: float
    images: int
    captions: int
    skipped_images: dict[str, str]
    resumed_from: int


def model_config(cfg: PretrainConfig):
    from ..models import tiny_clip_config

    return tiny_clip_config(text_width=cfg.width, text_layers=cfg.layers, vision_width=cfg.width,
                            vision_layers=cfg.layers, image_size=cfg.image_size,
                            patch_size=cfg.patch_size, embed_dim=cfg.embed_dim)


def load_pairs(captions_path: str | os.PathLike, images_dir: str | os.PathLike, transform,
               *, show_progress: bool = True) -> tuple[torch.Tensor, list[list[str]], dict[str, str]]:
    """Decode and transform every captioned image once.

    Returns pixels [N, 3, H, W] float16, the captions of each kept image, and the skipped
    images (file -> reason): an unreadable image is a counted skip, not a crash.
    """
    from ..data.coco import load_coco_captions
    from ..models import open_image

    caps = load_coco_captions(captions_path)
    by_image = caps.captions_by_image()
    images_dir = Path(images_dir)
    kept: list[list[str]] = []
    chunks: list[torch.Tensor] = []
    skipped: dict[str, str] = {}
    batch: list = []

    def flush() -> None:
        if batch:
            chunks.append(transform(batch).to(torch.float16))
            batch.clear()

    items = [(img, [c.caption for c in by_image.get(iid, [])]) for iid, img in caps.images.items()]
    for img, texts in progress(items, desc="load images", unit="img",
                               disable=None if show_progress else True):
        if not texts:
            continue
        try:
            batch.append(open_image(images_dir / img.file_name))
        except NegationClipError as e:
            skipped[img.file_name] = str(e)
            continue
        kept.append(texts)
        if len(batch) >= 512:
            flush()
    flush()
    if not kept:
        raise NegationClipError(f"{captions_path}: no captioned image could be read from {images_dir}"
                                + (f" ({len(skipped)} unreadable)" if skipped else ""))
    return torch.cat(chunks), kept, skipped


def _lr_at(cfg: PretrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _step_batch(cfg: PretrainConfig, step: int, n_images: int, captions: list[list[str]]
                ) -> tuple[torch.Tensor, list[str]]:
    """The images and captions of one step, a pure function of (seed, step): exact resume."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    b = min(cfg.batch_size, n_images)
    idx = torch.randperm(n_images, generator=g)[:b]
    pick = torch.randint(0, 1 << 30, (b,), generator=g).tolist()
    texts = [captions[i][p % len(captions[i])] for i, p in zip(idx.tolist(), pick)]
    return idx, texts


def pretrain(captions_path: str | os.PathLike, images_dir: str | os.PathLike,
             out_dir: str | os.PathLike, cfg: PretrainConfig | None = None, *,
             save_dtype: str = "float16", show_progress: bool = True,
             command: str | None = None, extra_record: dict | None = None,
             on_step: Callable[[int], None] | None = None) -> PretrainResult:
    """Train a CLIP from scratch on (image, caption) pairs; write a Hugging Face folder.

    ``out_dir`` receives the model (``model.safetensors``, config, tokenizer, preprocessor
    config) in ``save_dtype`` and ``PRETRAIN.json`` (config, data, loss curve, timing). A
    resume state is kept in ``out_dir/pretrain_state.pt`` while the job runs. ``on_step(step)``
    runs after each optimizer step (tests interrupt a run with it).
    """
    from ..models import bundle_from_config, image_features, save, text_features
    from ..models.load import parse_dtype

    cfg = (cfg or PretrainConfig()).validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = bundle_from_config(model_config(cfg), seed=cfg.seed)
    model = bundle.model
    pixels, captions, skipped = load_pairs(captions_path, images_dir, bundle.transform,
                                           show_progress=show_progress)
    n = pixels.shape[0]
    # no weight decay on gains, biases, the logit scale and the embedding tables
    decay = [p for n_, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n_]
    keep = [p for n_, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n_)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": keep, "weight_decay": 0.0}], lr=cfg.lr)
    curve: list[list[float]] = []
    start = 0
    state_path = out_dir / STATE_FILE
    if state_path.exists():
        state = load_torch_state(state_path)
        if state.get("config") != cfg.weights_fingerprint():
            raise NegationClipError(f"{state_path}: a resume state of a different configuration; "
                                    f"delete it or use another output folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        curve = [list(x) for x in state["curve"]]

    def write_state(step: int) -> None:
        atomic_write_bytes(state_path, torch_bytes({
            "config": cfg.weights_fingerprint(), "model": model.state_dict(),
            "optimizer": opt.state_dict(), "step": step, "curve": curve}))

    model.train()
    t0 = time.time()
    loss_v = float("nan")
    bar = progress(range(start, cfg.steps), desc="pretrain", unit="step", total=cfg.steps - start,
                   disable=None if show_progress else True)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        idx, texts = _step_batch(cfg, step, n, captions)
        tok = bundle.tokenizer(texts)
        img = image_features(model, pixels[idx].float())
        txt = text_features(model, tok.input_ids, tok.attention_mask)
        scale = model.logit_scale.exp().clamp(max=cfg.max_logit_scale)
        loss = contrastive_loss(img, txt, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        with torch.no_grad():  # CLIP's clamp of the learnt temperature
            model.logit_scale.clamp_(0, math.log(cfg.max_logit_scale))
        loss_v = float(loss.item())
        curve.append([step + 1, round(loss_v, 4)])
        bar.set_postfix(loss=f"{loss_v:.3f}", scale=f"{scale.item():.1f}", refresh=False)
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            write_state(step + 1)
        if on_step is not None:
            on_step(step + 1)
    bar.close()
    seconds = time.time() - t0
    model.eval()
    bundle.provenance = {"source": "negationclip world pretrain", "format": "config",
                         "pretrain": cfg.to_dict()}
    bundle.to(dtype=parse_dtype(save_dtype))
    save(bundle, out_dir / "model.tmp")
    # `save` writes a whole folder atomically; move its files up beside PRETRAIN.json.
    for f in (out_dir / "model.tmp").iterdir():
        os.replace(f, out_dir / f.name)
    (out_dir / "model.tmp").rmdir()
    bundle.to(dtype=torch.float32)
    record = {"command": command, "config": cfg.to_dict(), "save_dtype": save_dtype,
              "data": {"captions": str(captions_path), "images": str(images_dir), "images_used": n,
                       "captions_used": sum(len(c) for c in captions),
                       "skipped_images": len(skipped)},
              "parameters": sum(p.numel() for p in model.parameters()),
              "steps": cfg.steps, "resumed_from_step": start,
              "train_seconds_this_run": round(seconds, 1), "final_loss": round(loss_v, 4),
              "loss_curve": curve[:: max(1, len(curve) // 50)] + curve[-1:],
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    if extra_record:
        record.update(extra_record)
    atomic_write_json(out_dir / RECORD_FILE, record)
    atomic_write_text(out_dir / "PRETRAIN.md", model_card(record))
    state_path.unlink(missing_ok=True)
    return PretrainResult(out_dir, cfg.steps, loss_v, seconds, n,
                          sum(len(c) for c in captions), skipped, start)


def update_record(model_dir: str | os.PathLike, **fields: Any) -> dict:
    """Add fields (e.g. measured figures) to a model's ``PRETRAIN.json``."""
    record = read_record(model_dir)
    record.update(fields)
    atomic_write_json(Path(model_dir) / RECORD_FILE, record)
    atomic_write_text(Path(model_dir) / "PRETRAIN.md", model_card(record))
    return record


def model_card(record: dict) -> str:
    """``PRETRAIN.md``: how the model was made and what it scores, for a human reader."""
    c = record.get("config", {})
    w = record.get("world") or {}
    lines = ["# Tiny CLIP pretrained from scratch (`negationclip world pretrain`)", "",
             "A Hugging Face `CLIPModel` (OpenAI layout, real CLIP tokenizer) trained from random "
             "weights with CLIP's contrastive loss on captions that never negate. Everything below "
             "is read from `PRETRAIN.json` beside this file.", "",
             "## Command", "", "```"]
    if w:
        wc = w.get("config", {})
        wdir = Path(record.get("data", {}).get("captions", "W/x")).parent
        lines.append(f"negationclip world build --out {wdir} --images {wc.get('images')} "
                     f"--seed {w.get('seed')}")
    lines += [str(record.get("command") or "(run from Python: see config)"), "```", "",
              "## Config", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in c.items()]
    d = record.get("data", {})
    lines += ["", f"Data: {d.get('images_used')} train images, {d.get('captions_used')} captions; "
              f"{record.get('parameters', 0) / 1e6:.1f}M parameters, saved as "
              f"{record.get('save_dtype')}; {record.get('steps')} steps, final loss "
              f"{record.get('final_loss')}, {record.get('train_seconds_this_run')} s with "
              f"{record.get('threads')} thread(s) (torch {record.get('torch')}).", ""]
    f = record.get("figures")
    if f:
        lines += ["## Figures (NegWorld test split, measured by the command)", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in f.items()]
        lines.append("")
    return "\n".join(lines)


def read_record(model_dir: str | os.PathLike) -> dict:
    """The ``PRETRAIN.json`` beside a pretrained model (config, data, figures)."""
    path = Path(model_dir) / RECORD_FILE
    if not path.exists():
        raise NegationClipError(f"{model_dir}: no {RECORD_FILE} (not made by `world pretrain`?)")
    return load_json(path)
