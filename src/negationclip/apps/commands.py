"""What ``negationclip t2i``, ``segment`` and ``segment-eval`` do, as library calls (the CLI
only parses arguments into these configs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..utils import NegationClipError, atomic_dir, atomic_write_json

Log = Callable[[str], None]


def _same_run(path: Path, current: dict, keys: Sequence[str]) -> None:
    """Refuse to resume into a folder whose results came from different settings: mixing
    them would corrupt the numbers silently."""
    if not path.is_file():
        return
    from ..utils import load_json

    old = load_json(path)
    diff = [k for k in keys if isinstance(old, dict) and old.get(k) != current.get(k)]
    if diff:
        k = diff[0]
        raise NegationClipError(
            f"{path.parent}: holds results made with {k}={old.get(k)!r}, not {current.get(k)!r}; "
            "use another --out (or delete the folder) to start afresh")


# --- t2i --------------------------------------------------------------------------------------

@dataclass
class T2IConfig:
    pipeline: str
    out: str
    text_encoder: str | None = None       # None: the pipeline's own encoder only
    prompts: str | None = None            # None: the shipped negation prompt set
    compare: bool = False                 # also generate with the original encoder
    seeds: Sequence[int] = (0, 1)
    steps: int = 30
    guidance_scale: float = 7.5
    height: int | None = None
    width: int | None = None
    batch_size: int = 4
    negative_prompt: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    slot: str = "text_encoder"
    tokenizer: str = "auto"
    safety_checker: bool = True
    save_pipeline: str | None = None
    sheet_rows: int = 12
    thumb: int = 192
    judge: str = "none"                   # none | clip | vqa
    judge_model: str | None = None        # CLIP source (clip) or VLM name (vqa)
    vqa_backend: str = "hf"               # openai | hf
    vqa_url: str = "http://127.0.0.1:8000/v1"
    judge_device: str | None = None
    act: str | None = None                # MLP activation of --text-encoder (None: its own)
    judge_act: str | None = None          # MLP activation of the clip judge (None: its own)


def _complete(run_dir: Path, prompts, seeds) -> bool:
    from .diffusion import finished_images

    have = finished_images(run_dir, prompts)
    return all((p.id, int(s)) in have for p in prompts for s in seeds)


def make_judge(kind: str, model: str | None, *, device: str = "cpu", vqa_backend: str = "hf",
               vqa_url: str = "http://127.0.0.1:8000/v1", act: str | None = None):
    from .negation_score import ClipJudge, VqaJudge

    if kind == "clip":
        if not model:
            raise NegationClipError("the clip judge needs --judge-model (a plain CLIP, e.g. "
                                    "openai/clip-vit-large-patch14, not the model under test)")
        from ..models import load_clip

        return ClipJudge.from_bundle(load_clip(model, device=device, act=act))
    if kind == "vqa":
        opts = {"url": vqa_url} if vqa_backend == "openai" else {"device": device}
        return VqaJudge.from_backend(vqa_backend, model, **opts)
    raise NegationClipError(f"unknown judge {kind!r} (choose clip or vqa)")


def run_t2i(cfg: T2IConfig, log: Log = print) -> dict:
    """Generate with the original and/or NegationCLIP text encoder (same seeds), draw the
    contact sheet, and judge the negation score if asked. Every stage resumes."""
    from ..models.load import parse_dtype
    from . import diffusion as D

    prompts = D.read_prompts(cfg.prompts or D.negation_prompt_set())
    if cfg.save_pipeline and not cfg.text_encoder:
        raise NegationClipError("--save-pipeline needs --text-encoder (it saves the swapped pipeline)")
    labels = (["original"] if (cfg.compare or not cfg.text_encoder) else []) + \
        (["negationclip"] if cfg.text_encoder else [])
    out = Path(cfg.out)
    current = {**asdict(cfg), "seeds": list(cfg.seeds)}
    _same_run(out / "t2i_config.json", current,
              ("pipeline", "text_encoder", "steps", "guidance_scale", "height", "width",
               "negative_prompt", "dtype", "slot", "tokenizer", "safety_checker"))
    gen = D.GenerationConfig(seeds=tuple(cfg.seeds), steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                             height=cfg.height, width=cfg.width, batch_size=cfg.batch_size,
                             negative_prompt=cfg.negative_prompt)
    pipe, swapped, runs = None, False, {}
    for label in labels:
        run_dir = out / label
        runs[label] = run_dir
        need_swap = label == "negationclip" and (not _complete(run_dir, prompts, cfg.seeds)
                                                 or cfg.save_pipeline)
        if _complete(run_dir, prompts, cfg.seeds) and not need_swap:
            log(f"{label}: all {len(prompts) * len(cfg.seeds)} images already in {run_dir}")
            continue
        if pipe is None:
            pipe = D.load_pipeline(cfg.pipeline, device=cfg.device, dtype=parse_dtype(cfg.dtype),
                                   safety_checker=cfg.safety_checker)
            # written once the pipeline loads: a failed start leaves no config behind
            atomic_write_json(out / "t2i_config.json", current)
        if label == "negationclip" and not swapped:
            from transformers import CLIPTextModelWithProjection

            proj = isinstance(getattr(pipe, cfg.slot, None), CLIPTextModelWithProjection)
            enc = D.load_text_encoder(cfg.text_encoder, with_projection=proj, act=cfg.act)
            report = D.swap_text_encoder(pipe, enc, slot=cfg.slot, tokenizer=cfg.tokenizer)
            swapped = True
            for line in report.lines():
                log(line)
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / "swap.json", asdict(report))
            if cfg.save_pipeline:
                with atomic_dir(cfg.save_pipeline) as tmp:
                    pipe.save_pretrained(str(tmp), safe_serialization=True)
                log(f"wrote the swapped pipeline to {cfg.save_pipeline}")
        D.generate(pipe, prompts, run_dir, gen, label=label)
        log(f"{label}: {len(prompts) * len(cfg.seeds)} images in {run_dir}")
    atomic_write_json(out / "t2i_config.json", current)
    sheet = D.contact_sheet(runs, out / "contact_sheet.png", thumb=cfg.thumb, max_rows=cfg.sheet_rows)
    log(f"contact sheet: {sheet}")
    result: dict = {"runs": {k: str(v) for k, v in runs.items()}, "contact_sheet": str(sheet)}
    if cfg.judge != "none":
        from .negation_score import score_run

        judge = make_judge(cfg.judge, cfg.judge_model, device=cfg.judge_device or cfg.device,
                           vqa_backend=cfg.vqa_backend, vqa_url=cfg.vqa_url, act=cfg.judge_act)
        scores = {}
        for label, run_dir in runs.items():
            s = score_run(run_dir, judge)
            log(f"[{label}] " + "\n".join(s.lines()))
            j = s.to_json()
            j.pop("per_prompt")
            scores[label] = j
        atomic_write_json(out / "negation_score.json", scores)
        result["negation_score"] = scores
    return result


# --- segment ------------------------------------------------------------------------------------

def _load_seg(clipseg: str, text_encoder: str | None, device: str, dtype: str, log: Log,
              act: str | None = None):
    from ..models.load import parse_dtype
    from .segmentation import load_negation_clipseg

    model, proc, report = load_negation_clipseg(clipseg, text_encoder, device=device,
                                                dtype=parse_dtype(dtype), act=act)
    if report is not None:
        for line in report.lines():
            log(line)
    return model, proc, report


def run_segment(clipseg: str, image: str, texts: Sequence[str], out: str, *,
                text_encoder: str | None = None, threshold: float = 0.5, device: str = "cpu",
                dtype: str = "float32", mask_out: str | None = None, log: Log = print,
                act: str | None = None) -> dict:
    """Overlay PNG (one panel per text, side by side) and optionally the binary mask PNGs."""
    from PIL import Image

    from ..models import open_image
    from .segmentation import overlay, save_png, segment_probs

    if not texts:
        raise NegationClipError("segment: give at least one --text")
    if not 0.0 < threshold < 1.0:
        raise NegationClipError(f"--threshold must be in (0, 1), not {threshold}")
    img = open_image(image)
    model, proc, _ = _load_seg(clipseg, text_encoder, device, dtype, log, act=act)
    probs = segment_probs(model, proc, [img] * len(texts), list(texts))
    panels, areas = [], []
    for t, p in zip(texts, probs):
        m = p >= threshold
        areas.append(float(m.float().mean()))
        panels.append(overlay(img, m, caption=t))
    sheet = Image.new("RGB", (img.width * len(panels), img.height), "white")
    for i, pnl in enumerate(panels):
        sheet.paste(pnl, (i * img.width, 0))
    save_png(sheet, out)
    log(f"wrote {out}")
    if mask_out:
        base = Path(mask_out)
        for i, p in enumerate(probs):
            path = base if len(probs) == 1 else base.with_name(f"{base.stem}_{i}{base.suffix or '.png'}")
            save_png(Image.fromarray(((p >= threshold).numpy() * 255).astype("uint8")), path)
            log(f"mask: {path}")
    for t, a in zip(texts, areas):
        log(f"  {a * 100:5.1f}% of the image  {t!r}")
    return {"out": out, "mask_fraction": dict(zip(texts, areas))}


# --- segment-eval ----------------------------------------------------------------------------

@dataclass
class SegEvalConfig:
    clipseg: str
    format: str                      # refcocog | phrasecut | negref
    data: str                        # refs file / refer_*.json / NegRef json
    images: str
    out: str
    instances: str | None = None     # COCO instances (refcocog, negref)
    text_encoder: str | None = None
    split: str | None = "val"        # refcocog split ("all" for every split)
    filter: str | None = None        # None: negated for refcocog, all otherwise
    threshold: float = 0.5
    batch_size: int = 8
    limit: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    act: str | None = None           # MLP activation of text_encoder (None: its own)
    extra: dict = field(default_factory=dict)


def load_seg_samples(cfg: SegEvalConfig):
    from . import seg_eval as E

    if cfg.format not in E.FORMATS:
        raise NegationClipError(f"--format must be one of {', '.join(E.FORMATS)}")
    filt = cfg.filter or ("negated" if cfg.format == "refcocog" else "all")
    if cfg.format in ("refcocog", "negref") and not cfg.instances:
        raise NegationClipError(f"--format {cfg.format} needs --instances (COCO instances JSON)")
    if cfg.format == "refcocog":
        split = None if cfg.split in (None, "all") else cfg.split
        samples, stats = E.load_refcocog(cfg.data, cfg.instances, cfg.images, split=split, filter=filt)
    elif cfg.format == "phrasecut":
        samples, stats = E.load_phrasecut(cfg.data, cfg.images, filter=filt)
    else:
        samples, stats = E.load_negref_instances(cfg.data, cfg.instances, cfg.images, filter=filt)
    if cfg.limit:
        samples = samples[: cfg.limit]
    if not samples:
        raise NegationClipError(f"{cfg.data}: no expressions left to evaluate "
                                f"({stats.to_json()})")
    return samples, stats


def run_segment_eval(cfg: SegEvalConfig, log: Log = print) -> dict:
    from . import seg_eval as E

    samples, stats = load_seg_samples(cfg)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    _same_run(Path(cfg.out) / "seg_eval_config.json", asdict(cfg),
              ("clipseg", "text_encoder", "threshold", "dtype", "format", "data"))
    atomic_write_json(Path(cfg.out) / "seg_eval_config.json", asdict(cfg))
    log(f"{cfg.format}: {len(samples)} expressions ({stats.expressions} read)")
    model, proc, report = _load_seg(cfg.clipseg, cfg.text_encoder, cfg.device, cfg.dtype, log,
                                    act=cfg.act)
    label = "negationclipseg" if cfg.text_encoder else "clipseg"
    summary = E.evaluate_segmentation(E.clipseg_predictor(model, proc), samples, cfg.out,
                                      threshold=cfg.threshold, batch_size=cfg.batch_size,
                                      label=label, load_stats=stats)
    if report is not None:
        atomic_write_json(Path(cfg.out) / "swap.json", asdict(report))
    for line in E.summary_lines(summary):
        log(line)
    return summary
