"""The one configuration object of a fine-tuning run (plain dataclass, JSON round-trip), and the
named recipes (presets of its fields): ``paper`` (the defaults) is the released
``clip_finetune.py`` of NegationCLIP rule for rule; ``negationclip`` is this project's choices."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..utils import NegationClipError

MIXES = ("negated", "both", "ratio", "original")
HARD_NEGATIVES = ("none", "original", "affirmed", "both")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SPLITS = ("caption", "image")
VAL_LOSSES = ("batch_mean", "row_mean")
ADAMW_KERNELS = ("default", "fused")
METHOD_NAMES = ("negationclip", "conclip", "negbench", "tng", "omni")  # train/methods/ registry


@dataclass
class TrainConfig:
    """Everything that decides the trained weights; the defaults are the released recipe.

    Defaults = ``recipe("paper")``: the released ``clip_finetune.py`` (AdamW with torch's
    defaults, lr 1e-6, batch 512, 15 epochs, fp32, vision tower and final text layer norm
    frozen, logit scale trained and never clamped, numpy-seeded 80/20 split of the caption
    list, validation loss = mean of per-batch means, best epoch by validation loss). The one
    difference kept: image embeddings are computed once (exact up to float rounding: the
    vision tower is frozen and has no dropout). ``recipe("negationclip")`` changes the split,
    precision, logit-scale clamp, validation average and AdamW kernel (see ``RECIPES``).
    """

    # optimisation
    epochs: int = 15
    batch_size: int = 512            # global batch (all processes together)
    lr: float = 1e-6
    weight_decay: float = 0.01       # torch.optim.AdamW default, as in the released script
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "constant"       # constant | cosine (after warm-up)
    warmup_steps: int = 0
    grad_accum: int = 1              # optimizer step every N batches (negatives stay per batch)
    max_grad_norm: float | None = None
    max_steps: int | None = None     # stop early after this many optimizer steps
    # what learns
    train_logit_scale: bool = True   # the released script trains it (it is in model.parameters())
    freeze_final_layer_norm: bool = True
    # data
    mix: str = "negated"             # negated | both | ratio | original
    original_ratio: float = 0.0      # with mix="ratio": originals added per negated caption
    hard_negatives: str = "none"     # none | original | affirmed | both
    hard_negative_margin: float | None = None  # optional hinge per hard negative (text or image)
    hard_negative_weight: float = 1.0           # weight of that hinge term
    mine_negative_images: bool = False  # add, per negated row, a training image showing its object
    val_fraction: float = 0.2
    split_by: str = "caption"        # caption: the released split (numpy seed, 80/20 of the
                                     # caption list); image: no image in both parts
    dedupe_images_in_batch: bool = False  # avoid two captions of one image in a batch
    # runtime
    seed: int = 42
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    precision: str = "fp32"          # fp32 (released) | auto: bf16 autocast on CUDA if supported,
                                     # fp32 on CPU | bf16 | fp16 (autocast)
    clamp_logit_scale: float | None = None  # cap exp(logit_scale) after each step (CLIP's
                                     # pretraining caps it at 100); None: released (no clamp)
    val_loss: str = "batch_mean"     # batch_mean: mean of per-batch means over the validation
                                     # set in split order (released); row_mean: every caption
                                     # weighs the same, batches in a seeded shuffled order
    adamw_kernel: str = "default"    # default: torch's choice (what the released script gets);
                                     # fused: one fused kernel (same update, ~10x faster on CPU)
    compile: bool = False
    text_buckets: int = 1            # run each batch's captions as N length groups, each padded
                                     # to its own longest (same embeddings, ~1/3 less text compute
                                     # at 4); 1: one batch padded to its longest caption
    eval_every_steps: int | None = None   # validate also every N steps (besides each epoch)
    checkpoint_every_steps: int = 200     # resume state written every N steps and at the end
    log_every_steps: int = 1
    save_openai: bool = False        # also write <out>/best_openai.pt (OpenAI-style state dict)
    image_batch_size: int = 64       # batch size of the one-off image-embedding pass
    cache_dir: str | None = None     # image-embedding cache; default <out_dir>/../image_cache
    report_to: str = "auto"          # auto | tensorboard | wandb | none (train/reporting.py)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes stored with the run
    # training method (train/methods/): objective, its options, what of the vision tower learns
    method: str = "negationclip"     # negationclip | conclip | negbench | tng | omni
    method_options: dict[str, Any] = field(default_factory=dict)  # the method's own knobs
    train_vision: str | None = None  # none | all | last-K; None: the method's released setting
    instances: list[str] = field(default_factory=list)  # COCO instances (objects in images)

    def validate(self) -> "TrainConfig":
        def bad(msg: str):
            raise NegationClipError(f"train config: {msg}")

        if self.epochs < 1:
            bad(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            bad(f"batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}")
        if not self.lr > 0:
            bad(f"lr must be > 0, got {self.lr}")
        if self.grad_accum < 1:
            bad(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.mix not in MIXES:
            bad(f"mix must be one of {', '.join(MIXES)}, got {self.mix!r}")
        if self.hard_negatives not in HARD_NEGATIVES:
            bad(f"hard_negatives must be one of {', '.join(HARD_NEGATIVES)}, got {self.hard_negatives!r}")
        if self.schedule not in SCHEDULES:
            bad(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            bad(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.val_loss not in VAL_LOSSES:
            bad(f"val_loss must be one of {', '.join(VAL_LOSSES)}, got {self.val_loss!r}")
        if self.adamw_kernel not in ADAMW_KERNELS:
            bad(f"adamw_kernel must be one of {', '.join(ADAMW_KERNELS)}, got {self.adamw_kernel!r}")
        if self.clamp_logit_scale is not None and not self.clamp_logit_scale >= 1:
            bad(f"clamp_logit_scale must be >= 1 (a cap on exp(logit_scale)) or None, "
                f"got {self.clamp_logit_scale}")
        if self.split_by not in SPLITS:
            bad(f"split_by must be one of {', '.join(SPLITS)}, got {self.split_by!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            bad(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.original_ratio < 0:
            bad(f"original_ratio must be >= 0, got {self.original_ratio}")
        if self.mix == "ratio" and self.original_ratio == 0:
            bad("mix='ratio' needs original_ratio > 0 (originals per negated caption)")
        if self.warmup_steps < 0:
            bad(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_steps is not None and self.max_steps < 1:
            bad(f"max_steps must be >= 1, got {self.max_steps}")
        if self.checkpoint_every_steps < 1:
            bad(f"checkpoint_every_steps must be >= 1, got {self.checkpoint_every_steps}")
        if self.hard_negative_margin is not None and self.hard_negative_margin < 0:
            bad(f"hard_negative_margin must be >= 0, got {self.hard_negative_margin}")
        for name in ("image_batch_size", "log_every_steps", "text_buckets"):
            if getattr(self, name) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            bad(f"eval_every_steps must be >= 1, got {self.eval_every_steps}")
        if self.weight_decay < 0:
            bad(f"weight_decay must be >= 0, got {self.weight_decay}")
        from .methods import METHODS
        from .methods.base import parse_train_vision
        if self.method not in METHODS:
            bad(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        METHODS[self.method]().resolve_options(self.method_options)
        if self.train_vision is not None:
            parse_train_vision(self.train_vision)
        from .reporting import resolve
        resolve(self.report_to)  # an unknown or uninstalled reporter fails before any work
        return self

    @classmethod
    def recipe(cls, name: str = "paper", **overrides: Any) -> "TrainConfig":
        """The config of a named recipe (``RECIPES``), with ``overrides`` on top."""
        if name not in RECIPES:
            raise NegationClipError(f"unknown recipe {name!r} (choose from {', '.join(RECIPES)})")
        extra = dict(overrides.pop("extra", None) or {}, recipe=name)
        return cls(**{**RECIPES[name], **overrides, "extra": extra})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise NegationClipError(f"train config: unknown keys {unknown}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    # The fields that decide the weights (a resumed run must match them); runtime-only fields
    # such as logging frequency may change between a run and its resume.
    _RUNTIME_ONLY = ("device", "log_every_steps", "checkpoint_every_steps", "image_batch_size",
                     "cache_dir", "extra", "save_openai", "report_to", "compile", "max_steps", "epochs",
                     "text_buckets")

    def weights_fingerprint(self) -> dict[str, Any]:
        d = self.to_dict()
        for k in self._RUNTIME_ONLY:
            d.pop(k, None)
        return d


# Named presets of TrainConfig fields. "paper" is the dataclass defaults: the released
# clip_finetune.py. "negationclip" is this project's choices, each a deliberate difference
# named in the README table "where negationclip differs from the released code".
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "negationclip": {
        "split_by": "image",            # no image (its other captions) on both sides of the split
        "precision": "auto",            # bf16 autocast on CUDA (about 2x faster), fp32 on CPU
        "clamp_logit_scale": 100.0,     # CLIP's own cap on the temperature
        "val_loss": "row_mean",         # every validation caption weighs the same
        "adamw_kernel": "fused",        # same update rule, one kernel
        "text_buckets": 4,              # captions in 4 length groups: same math, less padding
    },
}
