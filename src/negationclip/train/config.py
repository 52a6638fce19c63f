"""The one configuration object of a fine-tuning run (plain dataclass, JSON round-trip)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..utils import NegationClipError

MIXES = ("negated", "both", "ratio", "original")
HARD_NEGATIVES = ("none", "original", "affirmed", "both")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SPLITS = ("image", "caption")
METHOD_NAMES = ("negationclip", "conclip", "negbench", "tng", "omni")  # train/methods/ registry


@dataclass
class TrainConfig:
    """Everything that decides the trained weights; defaults are the released NegationCLIP recipe.

    The released script: AdamW (torch defaults), lr 1e-6, batch 512, 15 epochs, 20% validation
    split, best checkpoint by validation loss, vision tower and final text layer norm frozen,
    logit scale trained. Differences by default: the validation split is by image (no image is
    in both splits), and image embeddings are computed once (exact, the vision tower is frozen).
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
    split_by: str = "image"          # image | caption (the released script splits captions)
    dedupe_images_in_batch: bool = False  # avoid two captions of one image in a batch
    # runtime
    seed: int = 42
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    precision: str = "auto"          # auto: bf16 autocast on CUDA if supported, fp32 on CPU
    compile: bool = False
    eval_every_steps: int | None = None   # validate also every N steps (besides each epoch)
    checkpoint_every_steps: int = 200     # resume state written every N steps and at the end
    log_every_steps: int = 1
    save_openai: bool = False        # also write best/openai.pt (OpenAI-style state dict)
    image_batch_size: int = 64       # batch size of the one-off image-embedding pass
    cache_dir: str | None = None     # image-embedding cache; default <out_dir>/../image_cache
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
        for name in ("image_batch_size", "log_every_steps"):
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
        return self

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
                     "cache_dir", "extra", "save_openai", "compile", "max_steps", "epochs")

    def weights_fingerprint(self) -> dict[str, Any]:
        d = self.to_dict()
        for k in self._RUNTIME_ONLY:
            d.pop(k, None)
        return d
