"""The NegationCLIP fine-tuning loop: text encoder only, cached image embeddings, dynamic padding.

Because the vision tower is frozen its output per image is a constant, so every image is
encoded once (through the shared ``ImageEmbeddingCache``) and each step runs only the text
tower on captions padded to the longest in the batch. Distributed runs (torchrun /
accelerate launch) split each global batch across processes and compute the loss over the
global batch, so N processes give the same weights as one process on the same batch.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..models import text_features_by_length
from ..utils import JsonlWriter, NegationClipError, atomic_write_json, atomic_write_text, progress
from ..utils.paths import check_output
from . import checkpoint as ckpt
from . import distributed as D
from .config import TrainConfig
from .data import (CaptionRecord, Example, ReadReport, TokenTable, coerce_records,
                   epoch_batches, mine_negative_images, originals_by_image, read_records, shard,
                   split_examples)
from .loss import loss_value
from .methods import get_method
from .methods.base import Method, StepContext, scaled_logit_bias, scaled_logit_scale
from .reporting import make_reporter
from .trainable import configure_method_trainable, trainable_parameters
from .vision import LiveVision


@dataclass
class FinetuneResult:
    out_dir: Path
    best_dir: Path | None
    best_val_loss: float | None
    best_step: int | None
    initial_val_loss: float | None
    steps: int
    history: list[dict]
    n_train: int
    n_val: int
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> count, before training
    plot: Path | None = None
    bundle: Any = None        # the trained ClipBundle in memory (best weights when there is a val split)
    seconds: float = 0.0
    rank: int = 0             # this process's rank (0 when not distributed)

    def summary(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "best_dir": str(self.best_dir) if self.best_dir else None,
                "best_val_loss": self.best_val_loss, "best_step": self.best_step,
                "initial_val_loss": self.initial_val_loss, "steps": self.steps,
                "n_train": self.n_train, "n_val": self.n_val, "skipped": self.skipped,
                "plot": str(self.plot) if self.plot else None, "seconds": round(self.seconds, 2)}


# --- helpers -------------------------------------------------------------------------------

def lr_lambda(step: int, *, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the base lr after ``step`` optimizer steps (linear warm-up, then const/cosine)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        span = max(1, total - warmup)
        prog = min(1.0, (step - warmup) / span)
        return 0.5 * (1.0 + math.cos(math.pi * prog))
    return 1.0


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW. ``adamw_kernel="default"``: torch's own choice of implementation, as the released
    ``torch.optim.AdamW(model.parameters(), lr=...)`` gets it. ``"fused"``: the fused kernel
    where torch supports it for the device (CPU and CUDA since torch 2.4): the same update up
    to float rounding; on a ViT-B/32 text tower (63M parameters, 25M of them the token
    embedding, whose gradient is dense) ~10x faster than the per-tensor loop on CPU."""
    kw = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.adamw_kernel != "fused":
        return torch.optim.AdamW(params, **kw)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, **kw)


def _autocast(device: torch.device, precision: str):
    if precision == "auto":
        precision = ("bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32")
    if precision == "fp32":
        return precision, None
    if device.type == "cpu" and precision == "fp16":
        raise NegationClipError("precision fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    dt = torch.bfloat16 if precision == "bf16" else torch.float16
    return precision, functools.partial(torch.autocast, device_type=device.type, dtype=dt)


@dataclass
class _Data:
    train: list[Example]
    val: list[Example]
    image_index: dict[str, int]
    image_emb: Any                # [n_images, D] normalised: a tensor, or StoredRows (memory-mapped)
    tokens: TokenTable
    skipped: Counter
    data_fingerprint: dict
    stream: Any = None            # streaming.EmbeddedStream when the training captions stream
    val_stream: Any = None        # ... and the validation captions
    seed: int = 0                 # of the in-memory batch order (TrainConfig.seed)
    live: Any = None              # vision.LiveVision already holding the prefix states (last-K)

    @property
    def n_train(self) -> int:
        return self.stream.n_rows if self.stream is not None else len(self.train)

    @property
    def n_val(self) -> int:
        return self.val_stream.n_rows if self.val_stream is not None else len(self.val)

    @property
    def n_images(self) -> int:
        return self.stream.n_images if self.stream is not None else len(self.image_index)

    def batches(self, epoch: int, batch_size: int, world: int, *, dedupe: bool = False):
        """(number of global batches, iterator over them as row lists) for one epoch."""
        if self.stream is not None:
            return (self.stream.n_batches(batch_size, world),
                    self.stream.batches(epoch, batch_size, min_size=world))
        idx = epoch_batches(len(self.train), batch_size, epoch=epoch, seed=self.seed, min_size=world,
                            groups=[self.image_index[e.image] for e in self.train] if dedupe else None)
        return len(idx), ([self.train[i] for i in b] for b in idx)


def _load_bundle(model, device: torch.device, inplace: bool):
    from ..models import ClipBundle, load_clip

    if isinstance(model, ClipBundle):
        b = model if inplace else ClipBundle(copy.deepcopy(model.model), model.tokenizer,
                                             model.transform, dict(model.provenance))
        return b.to(device, torch.float32)
    if isinstance(model, (str, os.PathLike)):
        return load_clip(model, device=device, dtype=torch.float32)
    raise NegationClipError(f"finetune: model must be a ClipBundle or a checkpoint path/id, "
                            f"got {type(model).__name__}")


def _records(records, image_root) -> tuple[list[CaptionRecord], Counter]:
    if isinstance(records, (str, Path)) or (isinstance(records, (list, tuple)) and records
                                            and isinstance(records[0], (str, Path))):
        rep: ReadReport = read_records(records)
        return rep.records, Counter(rep.skipped)
    return coerce_records(records), Counter()


def _prepare(bundle, records, image_root, cfg: TrainConfig, info: D.DistInfo,
             say: Callable[[str], None], cache, val_records=None,
             method: Method | None = None, live_vision: str | None = None,
             device: torch.device | None = None) -> _Data:
    from ..models import ImageEmbeddingCache
    from ..models.crops import KeyLoader
    from ..models.embedding_store import StoredRows
    from .streaming import StreamInput

    method = method or get_method(cfg.method, cfg.method_options)
    if cache is None:
        cache = ImageEmbeddingCache(cfg.cache_dir) if cfg.cache_dir else ImageEmbeddingCache()
    if isinstance(records, StreamInput):
        return _prepare_stream(bundle, records, image_root, cfg, info, say, cache, val_records, method)
    recs, skipped = _records(records, image_root)
    if cfg.instances and not method.uses_instances:
        say(f"note: method {method.name} does not read --instances; "
            f"{', '.join(map(str, cfg.instances))} ignored")
    method.check_records(recs, cfg)  # a missing field fails here, before any work
    examples, notes = method.build_rows(recs, image_root=image_root, cfg=cfg)
    for k, v in notes.items():
        say(f"note: {v} {k}")
    if not examples:
        raise NegationClipError(
            f"empty training set: {len(recs)} records gave no {cfg.mix} captions"
            + (f" ({', '.join(f'{v} {k}' for k, v in skipped.items())} skipped)" if skipped else ""))
    if val_records is None:  # split the whole caption list, as the released script does, so
        # its indices do not shift when some images turn out unreadable below
        tr_ex, va_ex = split_examples(examples, cfg.val_fraction, by=cfg.split_by, seed=cfg.seed)
        examples = tr_ex + va_ex
        n_train_rows = len(tr_ex)
    else:  # an explicit validation set instead of a random split
        n_train_rows = len(examples)
        vrecs, _ = _records(val_records, image_root)
        vex, _ = method.build_rows(vrecs, image_root=image_root, cfg=cfg, validation=True)
        examples = examples + vex
    keys = list(dict.fromkeys([e.image for e in examples] +
                              [e.hard_image for e in examples if e.hard_image]))

    live = (LiveVision(bundle.model, bundle.transform, device or torch.device("cpu"), live_vision,
                       len(keys)) if live_vision else None)
    if live is not None and live.use_prefix:
        # the trained layers make stored embeddings useless: compute what the steps read, the
        # frozen prefix's states, checking every image as the embedding pass would
        res = None
        failed = live.warm(keys, cfg.image_batch_size,
                           desc=f"vision prefix states (once; {live.split} frozen layers)")
    else:
        # every rank encodes its share of the misses into its own shards; all read one index.
        # KeyLoader: whole images, or crops named ``path#x,y,w,h`` (NegWorld's part records)
        res = cache.embed(bundle, keys, KeyLoader(), batch_size=cfg.image_batch_size,
                          desc="image embeddings (once; frozen vision tower)",
                          distributed=info.active)
        failed = res.failed
    ok_keys = set(keys) - set(failed) if res is None else {
        k for k, good in zip(keys, res.ok.tolist()) if good}
    kept, kept_val = [], []
    n_bad_rows = n_bad_hard = 0
    for j, e in enumerate(examples):
        if e.image not in ok_keys:
            n_bad_rows += 1
            continue
        if e.hard_image and e.hard_image not in ok_keys:
            e = dataclasses.replace(e, hard_image=None)
            n_bad_hard += 1
        (kept if j < n_train_rows else kept_val).append(e)
    if failed:
        skipped["captions whose image is missing or unreadable"] += n_bad_rows
        first = next(iter(failed.items()))
        say(f"skipped {n_bad_rows} captions: {len(failed)} images missing or unreadable "
            f"(e.g. {first[1]})")
        if n_bad_hard:
            say(f"dropped {n_bad_hard} hard-negative images that could not be read")
    if not kept:
        raise NegationClipError(
            f"empty training set: all {len(examples)} captions point to images that are missing or "
            f"unreadable (e.g. {next(iter(failed.values()), '?')}); check the image root")
    train, val = kept, kept_val
    if cfg.mine_negative_images:
        train, n_mined = mine_negative_images(train, originals_by_image(recs, image_root),
                                              seed=cfg.seed)
        say(f"mined a hard-negative image (one showing the negated object) for {n_mined} of "
            f"{len(train)} training captions")
    if method.requires_distractor(cfg):
        n0 = len(train)
        train = [e for e in train if e.hard_image]
        if n0 - len(train):
            skipped[f"training rows without a distractor image ({method.name})"] += n0 - len(train)
            say(f"note: {n0 - len(train)} of {n0} training rows have no distractor image "
                f"(negative_image) and are not used by {method.name}")
    if len(train) < 2:
        raise NegationClipError(f"training set too small: {len(train)} caption(s) after the "
                                f"validation split of {len(kept)}; add data or lower val_fraction")
    kept = train + val
    used = sorted({e.image for e in kept} | {e.hard_image for e in kept if e.hard_image})
    image_index = {k: i for i, k in enumerate(used)}
    pos = {k: i for i, k in enumerate(keys)}
    sel = [pos[k] for k in used]
    # an on-disk cache gives rows that stay memory-mapped: a step gathers only its batch
    emb = (None if res is None else res.embeddings.select(sel)
           if isinstance(res.embeddings, StoredRows) else res.embeddings[sel].float())
    texts = [t for e in kept for t in method.row_texts(e)]
    tokens = TokenTable(bundle.tokenizer, texts)
    fp = {"n_train": len(train), "n_val": len(val),
          "train_hash": _hash([(e.image, e.text, e.hard_texts, e.hard_image) for e in train]),
          "val_hash": _hash([(e.image, e.text) for e in val])}
    return _Data(train, val, image_index, emb, tokens, skipped, fp, seed=cfg.seed, live=live)


def _prepare_stream(bundle, inp, image_root, cfg: TrainConfig, info: D.DistInfo,
                    say: Callable[[str], None], cache, val_records, method: Method) -> _Data:
    """Streamed captions (csv / jsonl / webdataset): one pass embeds the images, then every
    epoch reads the files again; no caption is held beyond its batch. Every process reads the
    whole stream (text only) and the method takes its share of each global batch, as in memory."""
    from .streaming import StreamingDataset, embed_stream

    unsupported = [what for what, bad in (
        (f"--method {cfg.method} (streams carry one caption per record: use negationclip)",
         method.name != "negationclip"),
        (f"--mix {cfg.mix}", cfg.mix != "negated"),
        (f"--hard-negatives {cfg.hard_negatives}", cfg.hard_negatives != "none"),
        ("--mine-negative-images", cfg.mine_negative_images),
        ("--dedupe-images", cfg.dedupe_images_in_batch),
        ("--val-data outside the stream (give it in the same --dataset-type)", val_records is not None),
    ) if bad]
    if unsupported:
        raise NegationClipError(f"--dataset-type {inp.kind}: not available on a streamed caption set: "
                                + "; ".join(unsupported))
    ds = StreamingDataset(inp.train, inp.kind, inp.fmt, chunk=inp.chunk, seed=cfg.seed)
    stream = embed_stream(ds, bundle, cache, image_root, batch_size=cfg.image_batch_size,
                          distributed=info.active, desc="training captions")
    val_stream = None
    if inp.val:
        vds = StreamingDataset(inp.val, inp.kind, inp.fmt, chunk=inp.chunk, seed=cfg.seed)
        val_stream = embed_stream(vds, bundle, cache, image_root, batch_size=cfg.image_batch_size,
                                  distributed=info.active, desc="validation captions")
    else:
        say("note: a streamed caption set is not split: no --val-data, so no validation; the "
            "last weights are kept")
    skipped = Counter()
    for st in (stream, val_stream):
        if st is None:
            continue
        skipped.update({k: v for k, v in st.skipped.items() if v})
        if st.first_failure:
            say(f"skipped {st.skipped.get('captions whose image is missing or unreadable', 0)} "
                f"captions of the {'validation' if st is val_stream else 'training'} stream whose "
                f"image is missing or unreadable (e.g. {st.first_failure})")
    if stream.n_rows < 2:
        raise NegationClipError(
            f"training set too small: {stream.n_rows} usable caption(s) in {', '.join(ds.urls[:3])}"
            + (f" (e.g. {stream.first_failure})" if stream.first_failure else ""))

    def files(d):
        out = []
        for u in d.urls:
            st = os.stat(u)
            out.append((u, st.st_size, st.st_mtime_ns))
        return out
    fp = {"n_train": stream.n_rows, "n_val": val_stream.n_rows if val_stream else 0,
          "train_hash": _hash([inp.kind, inp.fmt, inp.chunk, files(ds)]),
          "val_hash": _hash(files(val_stream.ds)) if val_stream else None}
    tokens = TokenTable(bundle.tokenizer, (), keep=False)
    return _Data([], [], {}, None, tokens, skipped, fp, stream=stream, val_stream=val_stream,
                 seed=cfg.seed)


def _hash(obj) -> str:
    import hashlib
    return hashlib.blake2b(repr(obj).encode(), digest_size=8).hexdigest()


# --- the loop ------------------------------------------------------------------------------

class _Trainer:
    def __init__(self, bundle, data: _Data, cfg: TrainConfig, info: D.DistInfo,
                 device: torch.device, method: Method | None = None, live_vision: str | None = None):
        self.b, self.d, self.cfg, self.info, self.device = bundle, data, cfg, info, device
        self.model = bundle.model
        self.emb = data.image_emb.to(device) if data.image_emb is not None else None
        self.precision, self.autocast = _autocast(device, cfg.precision)
        self.method = method = method or get_method(cfg.method, cfg.method_options)
        method.setup(data.train, cfg)  # a stream has no hard negatives to find
        # with a trained vision tower the cached embeddings go stale: encode every step
        self.live_vision = bool(live_vision)
        self.vision = data.live or (LiveVision(self.model, bundle.transform, device, live_vision,
                                               len(data.image_index)) if live_vision else None)
        self.step = 0
        fwd = functools.partial(_text_features, self.model)
        self.fwd = torch.compile(fwd, dynamic=True) if cfg.compile else fwd
        # built before any resume state is loaded: the weights the run started from
        self.base_fwd = None
        if method.needs_base_text:
            base = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.base_fwd = functools.partial(_text_features, base)

    def _encode_text(self, texts: Sequence[str], fwd=None) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.b.embed_dim), device=self.device)
        fwd = fwd or self.fwd
        ids, mask = self.d.tokens.batch(list(texts))
        ids, mask = ids.to(self.device), mask.to(self.device)
        buckets = 1 if self.d.tokens.fixed_padding else self.cfg.text_buckets
        if self.autocast is not None:
            with self.autocast():
                return text_features_by_length(fwd, ids, mask, buckets).float()
        return text_features_by_length(fwd, ids, mask, buckets).float()

    def _base_text(self, texts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return torch.nn.functional.normalize(self._encode_text(texts, self.base_fwd), dim=-1)

    def _encode_images(self, keys: Sequence[str]) -> torch.Tensor:
        if not keys:
            return torch.zeros((0, self.b.embed_dim), device=self.device)
        if self.autocast is not None:
            with self.autocast():
                return self.vision.encode(keys).float()
        return self.vision.encode(keys).float()

    def _cached(self, keys: Sequence[str]) -> torch.Tensor:
        if self.d.stream is not None:
            return self.d.stream.image_rows(keys, also=self.d.val_stream).to(self.device)
        return self.emb[[self.d.image_index[k] for k in keys]]

    def context(self) -> StepContext:
        return StepContext(encode_text=self._encode_text, encode_images=self._encode_images,
                           cached_image=None if self.live_vision else self._cached,
                           logit_scale=scaled_logit_scale(self.model, self.info.world),
                           raw_logit_scale=self.model.logit_scale.exp().float(),
                           device=self.device, info=self.info, rank=self.info.rank,
                           world=self.info.world, seed=self.cfg.seed, step=self.step,
                           options=getattr(self.method, "opts", {}),
                           pair_loss=functools.partial(self.b.family.loss, self.model),
                           family=self.b.family,
                           logit_bias=scaled_logit_bias(self.model, self.b.family, self.info.world),
                           base_text=self._base_text if self.base_fwd is not None else None)

    def train_mode(self) -> None:
        self.model.text_model.train()
        if self.live_vision:
            self.model.vision_model.train()

    def batch_loss(self, rows: Sequence[Example]) -> tuple[torch.Tensor, float]:
        """(loss to backpropagate, true global loss value) for the GLOBAL batch ``rows``; the
        method encodes only this process's share; the first is ``world * loss`` under
        torch.distributed (see loss.py)."""
        return self.method.loss(self.context(), rows)

    @torch.no_grad()
    def validate(self) -> float | None:
        if not self.d.n_val:
            return None
        self.model.eval()
        # batch_mean (released): batches in split order, the mean of the per-batch means;
        # row_mean: a seeded shuffled order, every caption weighing the same (a stream: file order)
        row_mean = self.cfg.val_loss == "row_mean"
        if self.d.val_stream is not None:
            batches = self.d.val_stream.batches(-1, self.cfg.batch_size, min_size=self.info.world,
                                                shuffle=False)
        else:
            batches = ([self.d.val[i] for i in b] for b in epoch_batches(
                len(self.d.val), self.cfg.batch_size, epoch=-1, seed=self.cfg.seed,
                min_size=self.info.world, shuffle=row_mean))
        total = n = 0.0
        for b in batches:
            rows = [b[i] for i in shard(range(len(b)), self.info.rank, self.info.world)]
            loss = self._plain_loss(rows)
            w = len(b) if row_mean else 1
            total += loss * w
            n += w
        return total / n if n else None

    def _plain_loss(self, rows: Sequence[Example]) -> float:
        ctx = self.context()
        txt = ctx.encode_text([e.text for e in rows])
        img = ctx.local_image([e.image for e in rows])
        return loss_value(ctx.pair_loss(img, txt))


def _text_features(model, ids, mask):
    from ..models import text_features
    return text_features(model, ids, mask)


def finetune(model, records, config: TrainConfig | None = None, out_dir: str | Path = "runs/negationclip",
             *, image_root: str | Path | None = None, resume: bool = False, inplace: bool = False,
             val_records=None, cache=None, on_step: Callable[[int], None] | None = None,
             verbose: bool = True) -> FinetuneResult:
    """Fine-tune a CLIP text encoder on negation-inclusive captions; returns where the best model is.

    ``model``: a ``ClipBundle`` (copied unless ``inplace``) or anything ``load_clip`` reads.
    ``records``: caption file path(s) (generation JSONL, released/COCO captions JSON) or a list
    of ``CaptionRecord``/dicts in the generation layout. Images are ``image_root / record.image``.
    ``val_records``: an explicit validation set (same forms; e.g. a val split's captions)
    instead of the random ``val_fraction`` split.
    ``resume``: continue the run in ``out_dir`` from its last saved state (same weights as an
    uninterrupted run). ``on_step(step)`` is called after each optimizer step (tests use it to
    interrupt a run).
    """
    from .streaming import StreamInput

    cfg = (config or TrainConfig()).validate()
    out = check_output(out_dir, kind="dir", option="out")  # before the embedding pass, not after
    t0 = time.time()
    info, device = D.setup(cfg.device)
    say = _say if (verbose and info.is_main) else (lambda m: None)
    try:
        if ckpt.has_state(out) and not resume:
            raise NegationClipError(f"{out}: already holds a run (state/); pass resume to continue "
                                    "it, or choose another output folder")
        if resume and not ckpt.has_state(out):
            say(f"note: nothing to resume in {out}; starting a new run")
        torch.manual_seed(cfg.seed)
        bundle = _load_bundle(model, device, inplace)
        method = get_method(cfg.method, cfg.method_options)
        method.check_family(bundle.family)
        vision = cfg.train_vision or method.train_vision
        summary = configure_method_trainable(bundle.model, method, cfg, vision)
        say(f"method {method.name}: " + summary.describe())
        if vision != "none" and isinstance(records, StreamInput):
            raise NegationClipError(f"--train-vision {vision}: a streamed caption set trains on "
                                    "stored image embeddings (a frozen vision tower): use "
                                    "--train-vision none")
        data = _prepare(bundle, records, image_root, cfg, info, say, cache, val_records, method,
                        None if vision == "none" else vision, device)
        say(f"{data.n_train} training and {data.n_val} validation captions, "
            f"{data.n_images} images "
            + ("(encoded every step: the vision tower trains)" if vision != "none"
               else "(embedded once)"))
        return _run(bundle, data, cfg, info, device, out, resume, on_step, say, t0, method,
                    None if vision == "none" else vision)
    finally:
        D.teardown(info)


def _run(bundle, data: _Data, cfg: TrainConfig, info: D.DistInfo, device: torch.device, out: Path,
         resume: bool, on_step, say, t0: float, method: Method | None = None,
         live_vision: str | None = None) -> FinetuneResult:
    tr = _Trainer(bundle, data, cfg, info, device, method, live_vision)
    model = bundle.model
    params = [p for _, p in trainable_parameters(model)]
    opt = make_optimizer(params, cfg)
    n_batches = data.batches(0, cfg.batch_size, info.world)[0]
    steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(
        lr_lambda, warmup=cfg.warmup_steps, total=total, schedule=cfg.schedule))
    scaler = torch.amp.GradScaler("cuda") if tr.precision == "fp16" else None
    expect = {"config": cfg.weights_fingerprint(), "data": data.data_fingerprint}
    history: list[dict] = []
    epoch, group_pos, step = 0, 0, 0
    best_val: float | None = None
    best_step: int | None = None
    initial_val: float | None = None
    if resume and ckpt.has_state(out):
        meta = ckpt.load_state(out, model=model, optimizer=opt, scheduler=sched, scaler=scaler,
                               expect=expect)
        epoch, group_pos, step = meta["epoch"], meta["group"], meta["step"]
        best_val, best_step = meta.get("best_val"), meta.get("best_step")
        initial_val = meta.get("initial_val")
        history = meta.get("history", [])
        say(f"resumed {out} at step {step} (epoch {epoch + 1}, batch group {group_pos})")
    log_path = out / "log.jsonl"
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
        # the log restarts from the saved history: steps redone after a kill are not duplicated
        atomic_write_text(log_path, "".join(_jsonl(h) for h in history))
    log = JsonlWriter(log_path, append=True, fsync=False) if info.is_main else None
    reporter = make_reporter(cfg.report_to, out, cfg.to_dict()) if info.is_main else None

    def record(h: dict) -> None:
        history.append(h)
        if log is not None:
            log.write(h)
        if reporter is not None:
            reporter.log(h)

    def save_state() -> None:
        if info.is_main:
            ckpt.save_state(out, model=model, optimizer=opt, scheduler=sched, scaler=scaler,
                            meta=dict(expect, epoch=epoch, group=group_pos, step=step,
                                      best_val=best_val, best_step=best_step,
                                      initial_val=initial_val, history=history))
        D.barrier(info)

    def evaluate_and_keep_best() -> None:
        nonlocal best_val, best_step
        v = tr.validate()
        if v is None:
            return
        if not math.isfinite(v):
            raise NegationClipError(f"validation loss is {v} at step {step}: training diverged; "
                                    "lower the lr or use fp32/bf16")
        record({"kind": "val", "step": step, "epoch": epoch, "val_loss": v})
        if best_val is None or v < best_val:
            best_val, best_step = v, step
            if info.is_main:
                ckpt.save_best(bundle, out, openai=cfg.save_openai, provenance={
                    "finetuned": {"step": step, "val_loss": v, "config": cfg.to_dict()}})
            D.barrier(info)
        say(f"step {step}: validation loss {v:.4f} (best {best_val:.4f} at step {best_step})")
        tr.train_mode()

    if step == 0 and initial_val is None and data.n_val:
        initial_val = tr.validate()
        if initial_val is not None:
            record({"kind": "val", "step": 0, "epoch": 0, "val_loss": initial_val})
            say(f"validation loss before training: {initial_val:.4f}")

    bar = progress(total=total, desc="fine-tune", unit="step", disable=None if info.is_main else True)
    bar.update(step)
    tr.train_mode()
    done = step >= total
    while not done and epoch < cfg.epochs:
        n_b, batch_iter = data.batches(epoch, cfg.batch_size, info.world,
                                       dedupe=cfg.dedupe_images_in_batch)
        n_groups = math.ceil(n_b / cfg.grad_accum)
        groups = iter(lambda: list(itertools.islice(batch_iter, cfg.grad_accum)), [])
        for _ in range(group_pos):  # a resumed run: the order is a function of seed and epoch
            next(groups, None)
        while group_pos < n_groups:
            t_step = time.time()
            group = next(groups, None)
            if group is None:
                raise NegationClipError(
                    f"the training captions changed during the run: epoch {epoch + 1} ended after "
                    f"{group_pos} of {n_groups} steps")
            opt.zero_grad(set_to_none=True)
            value = 0.0
            tr.step = step
            for rows in group:  # the global batch; the method shards it
                loss, v = tr.batch_loss(rows)
                loss = loss / len(group)
                value += v / len(group)
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
            if not math.isfinite(value):
                raise NegationClipError(
                    f"loss is {value} at step {step + 1} (epoch {epoch + 1}): training diverged; "
                    "lower the lr, use fp32/bf16 instead of fp16, or check the captions")
            D.average_gradients(params, info)
            if scaler is not None:
                scaler.unscale_(opt)
            gnorm = None
            if cfg.max_grad_norm:
                gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            if cfg.clamp_logit_scale is not None:  # opt-in: the released script never clamps
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(cfg.clamp_logit_scale))
            step += 1
            group_pos += 1
            rows_done = sum(len(b) for b in group)
            dt = max(time.time() - t_step, 1e-9)
            if step % cfg.log_every_steps == 0 or step == total:
                h = {"kind": "train", "step": step, "epoch": epoch, "loss": value,
                     "lr": sched.get_last_lr()[0], "captions_per_s": rows_done / dt,
                     "logit_scale": float(model.logit_scale.detach().exp())}
                if gnorm is not None:
                    h["grad_norm"] = gnorm
                if device.type == "cuda":
                    h["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
                record(h)
            # refresh=False: the update redraws at tqdm's pace (in a log, one line per interval)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}",
                            cap_s=f"{rows_done / dt:.0f}", refresh=False)
            bar.update(1)
            done = step >= total
            end_of_epoch = group_pos >= n_groups
            if end_of_epoch:
                epoch += 1
                group_pos = 0
            # validation after each epoch (the released recipe), every eval_every_steps, and at
            # the end; the resume state every checkpoint_every_steps and at the end
            if end_of_epoch or done or (cfg.eval_every_steps and step % cfg.eval_every_steps == 0):
                evaluate_and_keep_best()
            if done or step % cfg.checkpoint_every_steps == 0:
                save_state()
            if on_step is not None:
                on_step(step)
            if done or end_of_epoch:
                break
    bar.close()
    if log is not None:
        log.close()
    if reporter is not None:
        reporter.close()
    if best_val is not None and initial_val is not None and best_val >= initial_val:
        say(f"note: no checkpoint beat the validation loss before training ({initial_val:.4f}; "
            f"best {best_val:.4f} at step {best_step}): try another lr or more data")
    best_dir = None
    if data.n_val:
        best_dir = out / ckpt.BEST if best_val is not None else None
        if best_dir is not None and (best_dir / "config.json").exists():
            from ..models import load_clip
            best = load_clip(best_dir, device=device)
            bundle.model.load_state_dict(best.model.state_dict())
    else:  # no validation split: the last weights are the result
        if info.is_main:
            ckpt.save_best(bundle, out, openai=cfg.save_openai,
                           provenance={"finetuned": {"step": step, "config": cfg.to_dict()}})
        D.barrier(info)
        best_dir = out / ckpt.BEST
    bundle.model.eval()
    plot = None
    if info.is_main:
        from .plots import plot_loss_curve
        plot = plot_loss_curve(history, out / "loss_curve.png")
    res = FinetuneResult(out, best_dir, best_val, best_step, initial_val, step, history,
                         data.n_train, data.n_val, dict(data.skipped), plot, bundle,
                         time.time() - t0, info.rank)
    if info.is_main:
        atomic_write_json(out / "result.json", res.summary())
    return res


def _say(msg: str) -> None:
    """Print above the progress bar (tqdm.write) instead of through it."""
    from tqdm.auto import tqdm
    tqdm.write(msg)


def _jsonl(h: dict) -> str:
    import json
    return json.dumps(h, ensure_ascii=False) + "\n"
