"""``negationclip demo``: the whole NegationCLIP loop, offline, on NegWorld, with an honest
before/after.

It chains the real pipeline and nothing else: NegWorld export (COCO / VQAv2 / NegRefCOCOg /
VALSE formats) -> baseline benchmarks of the shipped tiny base CLIP -> P1 + P2 generation with
the offline ``rules`` backends -> text-encoder fine-tuning -> the same benchmarks -> report.
Every number in ``report.json`` is measured in this run, on test images that neither the
base model's pretraining nor the fine-tuning saw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .evaluate.html_report import pair_examples, write_html_report
from .utils import NegationClipError, atomic_write_json, atomic_write_text, read_jsonl

BASE_MODEL_DIR = Path(__file__).resolve().parent / "data" / "negworld" / "base_model"
METRICS = ("negation_balanced", "negation_heldout_phrasing", "negref", "valse_existence",
           "retrieval_i2t_r1", "retrieval_t2i_r1")
METRIC_LABELS = {
    "negation_balanced": "negated retrieval, balanced pairs",
    "negation_heldout_phrasing": "balanced pairs, held-out phrasings",
    "negref": "NegRef (negated referring expressions)",
    "valse_existence": "VALSE existence",
    "retrieval_i2t_r1": "retrieval image->text R@1",
    "retrieval_t2i_r1": "retrieval text->image R@1",
}
ABLATION_ROWS = ("P1", "Rand-P1", "P2", "P1+P2")
RECIPE_ROW = "P1+P2+scene graph"  # the demo's data with its scene-graph records (NegWorld only)
# The field's benchmark formats, on the world's own files (test scenes), through the evaluate
# plug-ins: (key, label, plug-in, file key of the world export or None, result field).
FIELD_SPECS = (
    ("negbench_mcq_total", "NegBench MCQ, total", "negbench-mcq", "negbench_mcq", "total_accuracy"),
    ("negbench_mcq_positive", "NegBench MCQ, positive", "negbench-mcq", "negbench_mcq",
     "positive_accuracy"),
    ("negbench_mcq_negative", "NegBench MCQ, negative", "negbench-mcq", "negbench_mcq",
     "negative_accuracy"),
    ("negbench_mcq_hybrid", "NegBench MCQ, hybrid", "negbench-mcq", "negbench_mcq",
     "hybrid_accuracy"),
    ("negbench_retrieval_r1", "NegBench retrieval, image R@1", "negbench-retrieval",
     "negbench_retrieval", "image_retrieval_recall@1"),
    ("negbench_retrieval_r5", "NegBench retrieval, image R@5", "negbench-retrieval",
     "negbench_retrieval", "image_retrieval_recall@5"),
    ("negbench_negated_retrieval_r1", "NegBench negated retrieval, image R@1",
     "negbench-retrieval", "negbench_negated_retrieval", "image_retrieval_recall@1"),
    ("negbench_negated_retrieval_r5", "NegBench negated retrieval, image R@5",
     "negbench-retrieval", "negbench_negated_retrieval", "image_retrieval_recall@5"),
    ("ccneg", "CC-Neg accuracy", "ccneg", None, "accuracy_official"),
    ("sugarcrepe_mean", "SugarCREPE mean (7 subsets)", "sugarcrepe", None, "accuracy_official"),
)
FIELD_METRICS = tuple(s[0] for s in FIELD_SPECS)
METRIC_LABELS.update({s[0]: s[1] for s in FIELD_SPECS})


@dataclass
class DemoConfig:
    """What the demo runs. Fine-tuning defaults are the recipe found on NegWorld (the report's
    "The recipe, and why"): the text tower only; P1 + P2 negated captions plus some originals,
    each with a negative image (the scene with the negated object put in) under a hinge, and
    NegWorld's scene-graph records (``scene_records``: colour and part negations on object
    crops against their re-rendered twin crop; absence and presence-negation statements); the
    negationclip method's prototype hinge (grouped by negated object or attribute) and its
    keep term (original captions held at the base's text features). ``scene_records=""``,
    ``prototype_weight=0``, ``keep_weight=0`` and ``hard_negative_weight=50`` give the paper's
    setting (text tower only, P1 + P2, with this project's hinge)."""

    out: str = "runs/demo"
    quick: bool = False
    ablation: bool = False
    compare: bool = False              # also `negationclip compare` on this world (OUT/compare)
    seed: int = 0
    base: str | None = None            # default: the shipped NegWorld base model
    threads: int | None = None         # torch CPU threads (None: torch's default)
    act: str | None = None             # MLP activation of the base (None: its config.json)
    # fine-tuning (the recipe found on NegWorld; see the report's notes)
    steps: int = 450
    batch_size: int = 256
    lr: float = 1e-3                   # a tiny model from scratch needs far more than CLIP's 1e-6
    mix: str = "ratio"
    original_ratio: float = 0.3        # original captions per negated one: keeps retrieval
    hard_negatives: str = "none"       # "affirmed": "X with Y" as a negative text (see notes)
    mine_negative_images: bool = True  # a train image whose captions show Y: a negative image
    scene_negatives: bool = True       # NegWorld only: the same scene with Y put in (scene graph)
    # NegWorld only: records read off the scene graphs (data/negworld/scene_records.py): part
    # and attribute negations on object crops with their twin crop, absence and presence
    # negation statements; "" for P1 + P2 only (the paper's data). On by default: the only
    # source that lifts NegRef and VALSE existence (see the README's demo section)
    scene_records: str = "parts,absence,presence"
    # what a part record may negate (scene_records.PART_PROPERTIES); size is left out: the crop
    # grows with the object, so an object and its re-sized twin look the same once resized
    scene_part_properties: str = "color,part"
    scene_records_limit: int | None = 4000  # at most this many train scenes (None: all)
    scene_presence_fraction: float = 1.0  # presence-negation records for this share of scenes
    # what of the vision tower trains besides the text tower: "none" (the paper) or "last-K"
    # (the last K layers, post layer norm and projection; see train --train-vision). The text
    # tower alone holds retrieval better here (the image side then never moves)
    train_vision: str = "none"
    hard_negative_margin: float | None = 0.2
    hard_negative_weight: float = 75.0  # the margin term must outweigh the in-batch softmax
    # the negationclip method's options (train/methods/negationclip.py): a hinge toward each
    # negated object's mean direction in the batch (times hard_negative_weight), and a term
    # keeping the original captions' text features at the base model's (holds retrieval)
    prototype_weight: float = 1.0
    keep_weight: float = 10.0
    max_grad_norm: float | None = None
    val_fraction: float = 0.0          # no validation split: the last weights are the result
    # --quick: a small world with a seed the base model never saw, and a short fine-tune
    quick_images: int = 400
    quick_steps: int = 25
    quick_batch_size: int = 64
    grid_pairs: int = 8

    def finetune_steps(self) -> int:
        return self.quick_steps if self.quick else self.steps

    def finetune_batch(self) -> int:
        return self.quick_batch_size if self.quick else self.batch_size


class _Stages:
    """Prints each stage with its number and keeps its wall time."""

    def __init__(self, total: int):
        self.total, self.k, self.seconds = total, 0, {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.k += 1
        print(f"[{self.k}/{self.total}] {name}", flush=True)
        t = time.time()
        yield
        self.seconds[name] = round(time.time() - t, 1)
        print(f"      done in {self.seconds[name]:.1f} s", flush=True)


# --- world and base model -----------------------------------------------------------------

def base_model_dir(cfg: DemoConfig) -> Path:
    d = Path(cfg.base) if cfg.base else BASE_MODEL_DIR
    if not (d / "config.json").exists():
        raise NegationClipError(
            f"{d}: no base model there. Make one with `negationclip world build --out W "
            f"--images 10000 --seed 0 && negationclip world pretrain --world W --out {d}`")
    return d


def world_config(cfg: DemoConfig, base_record: dict):
    """The world the base model was pretrained on (its test split was never trained on), or for
    --quick a small world from another seed (none of its images was ever seen)."""
    from .data.negworld import WorldConfig

    rec = (base_record.get("world") or {}).get("config")
    if cfg.quick:
        seed = int((base_record.get("world") or {}).get("seed", 0)) + 1000 + cfg.seed
        return WorldConfig(images=cfg.quick_images, seed=seed)
    if rec is None:
        raise NegationClipError("the base model's PRETRAIN.json records no NegWorld config; the demo "
                                "cannot tell which images it was pretrained on")
    fields = {f.name for f in dataclasses.fields(WorldConfig)}
    return WorldConfig(**{k: v for k, v in rec.items() if k in fields})


def ensure_world(wcfg, out: Path):
    """Build the export (or reuse one with the same config)."""
    from .data.negworld import WorldExport, build_world

    if (out / "manifest.json").exists():
        try:
            w = WorldExport.open(out)
            if w.manifest.get("config") == dataclasses.asdict(wcfg):
                return w, True
        except NegationClipError:
            pass
    build_world(out, wcfg, overwrite=True)
    return WorldExport.open(out), False


# --- benchmarks ------------------------------------------------------------------------------

def field_inputs(world) -> dict:
    """The evaluate plug-ins' inputs for the field's formats a NegWorld export writes."""
    from .evaluate.registry import default_inputs

    return {**default_inputs(),
            "negbench_mcq": [str(world.negbench_mcq)],
            "negbench_retrieval": [str(world.negbench_retrieval),
                                   str(world.negbench_negated_retrieval)],
            "negbench_images": str(world.images_dir),
            "ccneg": str(world.ccneg), "ccneg_images": str(world.images_dir), "ccneg_eval_size": 0,
            "sugarcrepe_dir": str(world.sugarcrepe_dir), "sugarcrepe_images": str(world.images_dir)}


def measure_field(bundle, world, cache, name: str) -> tuple[dict, dict]:
    """The field's formats (NegBench MCQ and (negated) retrieval, CC-Neg, SugarCREPE) run by
    their evaluate plug-ins on the world's files: fractions keyed as ``FIELD_METRICS``."""
    from .evaluate.registry import RunContext, file_stem_key, registry

    reg, inputs = registry(), field_inputs(world)
    ctx = RunContext(cache=cache, model_name=name)
    results: dict[str, dict] = {}
    for plugin in dict.fromkeys(s[2] for s in FIELD_SPECS):
        b = reg[plugin]
        for key, payload in b.plan(inputs).items():
            results[key] = b.run(bundle, payload, inputs, ctx)
    m = {}
    for key, _, plugin, file_key, field in FIELD_SPECS:
        unit = file_stem_key(plugin, getattr(world, file_key)) if file_key else plugin
        v = results[unit].get(field)
        if v is None:
            raise NegationClipError(f"benchmark {unit} gave no {field} (no items?) for {name}")
        m[key] = float(v)
    return m, {k: _slim(v) for k, v in results.items()}


def measure(bundle, world, cache, name: str, field: bool = True) -> tuple[dict, dict]:
    """The six headline metrics (fractions) and the full benchmark outputs, on the test split;
    with ``field`` also the field's formats (``FIELD_METRICS``, on the world's own files)."""
    from .evaluate.negation_pairs import evaluate_negation_pairs
    from .evaluate.negrefcocog import evaluate_negrefcocog
    from .evaluate.retrieval import evaluate_retrieval
    from .evaluate.valse import evaluate_valse

    pairs = evaluate_negation_pairs(bundle, world.negation_pairs, root=world.root, split="test",
                                    cache=cache, model_name=name)
    negref = evaluate_negrefcocog(bundle, world.negref, world.images_dir, cache=cache, model_name=name)
    valse = evaluate_valse(bundle, world.valse_existence, world.images_dir, cache=cache,
                           model_name=name)
    ret = evaluate_retrieval(bundle, image_root=world.images_dir, captions=world.captions("test"),
                             cache=cache, model_name=name, benchmark="negworld-retrieval")
    m = {"negation_balanced": pairs["accuracy"], "negation_heldout_phrasing": pairs["heldout_accuracy"],
         "negref": negref["accuracy"], "valse_existence": valse["accuracy"],
         "retrieval_i2t_r1": ret["i2t_r1"], "retrieval_t2i_r1": ret["t2i_r1"]}
    for k, v in m.items():
        if v is None:
            raise NegationClipError(f"benchmark {k} gave no result (no items?) for {name}")
        m[k] = float(v)
    details = {"negation_pairs": _slim(pairs), "negref": _slim(negref), "valse_existence": _slim(valse),
               "retrieval": _slim(ret)}
    if field:
        t = time.time()
        fm, fd = measure_field(bundle, world, cache, name)
        m.update(fm)
        details["field_timing"] = {"seconds": round(time.time() - t, 1)}  # what the formats add
        details.update(fd)  # one benchmark per plug-in unit (the HTML report lists each)
    return m, details


def _slim(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool, type(None), dict))
            and k not in ("items",)}


# --- generation and fine-tuning --------------------------------------------------------------

def generate(world, out: Path, which: str, seed: int, limit: int | None) -> dict:
    """One pipeline's records (rules backends) from the train split; returns its summary."""
    from .generate import run_p1, run_p2

    if which in ("P1", "Rand-P1"):
        return run_p1(world.captions("train"), out, instances=world.instances("train"),
                      images=world.images_dir, random_objects=which == "Rand-P1", seed=seed,
                      limit=limit, overwrite=True)
    q, a = world.vqa("train")
    return run_p2(q, a, world.captions("train"), out, seed=seed, limit=limit, overwrite=True)


def scene_negatives(world, path: Path, seed: int, gen: dict) -> Path:
    """``path`` with a ``negative_image`` per object record (the scene with the object put in)."""
    from .data.negworld.counterfactual import add_scene_negatives

    out = path.with_name(path.stem + "+scene-negatives.jsonl")
    counts = add_scene_negatives(path, world.root, out, seed=seed, show_progress=False)
    gen.setdefault("scene_negatives", {})[path.name] = counts
    print(f"      {path.name}: {counts['with_negative_image']} of {counts['records']} records "
          f"got a scene-graph negative image ({counts['named_replaced']} with an object the "
          f"caption names turned into the negated one: every other object was named)")
    return out


def scene_graph_records(world, path: Path, cfg: DemoConfig) -> dict:
    """NegWorld's scene-graph records (``cfg.scene_records`` kinds) from the train scenes."""
    from .data.negworld.scene_records import write_scene_records

    from .data.negworld.scene_records import parse_kinds, parse_part_properties

    kinds = parse_kinds(cfg.scene_records)
    limit = cfg.scene_records_limit
    if cfg.quick:
        limit = min(limit or cfg.quick_images, cfg.quick_images // 2)
    props = parse_part_properties(cfg.scene_part_properties)
    counts = write_scene_records(world.root, path, kinds=kinds, seed=cfg.seed, limit=limit,
                                 presence_fraction=cfg.scene_presence_fraction,
                                 part_properties=props, show_progress=False)
    skipped = (f" ({counts['parts_skipped']} part negations of other properties than "
               f"{', '.join(props)} skipped)" if counts.get("parts_skipped") else "")
    print(f"      scene graph: " + ", ".join(f"{k} {counts[k]}" for k in kinds)
          + f" records from {counts['scenes']} train scenes{skipped}")
    return counts


def train_config(cfg: DemoConfig):
    from .train import TrainConfig

    # The demo's own recipe, every choice explicit: this project's recipe ("negationclip":
    # logit scale capped at 100, fused AdamW, split by image) in fp32 on CPU, not the paper's,
    # whose lr 1e-6 would barely move a tiny model trained from scratch.
    return TrainConfig.recipe("negationclip", precision="fp32", clamp_logit_scale=100.0,
                              split_by="image", val_loss="row_mean", adamw_kernel="fused",
                              epochs=1000, max_steps=cfg.finetune_steps(),
                              batch_size=cfg.finetune_batch(),
                              lr=cfg.lr, schedule="constant", warmup_steps=0,
                              max_grad_norm=cfg.max_grad_norm, mix=cfg.mix,
                              original_ratio=cfg.original_ratio, hard_negatives=cfg.hard_negatives,
                              hard_negative_margin=cfg.hard_negative_margin,
                              hard_negative_weight=cfg.hard_negative_weight,
                              mine_negative_images=cfg.mine_negative_images,
                              train_vision=cfg.train_vision,
                              method_options={k: v for k, v in (("prototype_weight", cfg.prototype_weight),
                                                                ("keep_weight", cfg.keep_weight)) if v},
                              val_fraction=cfg.val_fraction, seed=cfg.seed, device="cpu",
                              checkpoint_every_steps=max(50, cfg.finetune_steps() // 2))


def run_finetune(base_dir: Path, data: list[Path], world, out: Path, cfg: DemoConfig, cache):
    from .models import load_clip
    from .train import finetune

    if out.exists():  # a demo run starts its fine-tuning afresh (same seed, same weights)
        shutil.rmtree(out)
    bundle = load_clip(base_dir, act=cfg.act)
    return finetune(bundle, [str(p) for p in data], train_config(cfg), out,
                    image_root=world.images_dir, inplace=True, cache=cache, verbose=True)


def tuned_part(cfg: DemoConfig) -> str:
    """What fine-tuning changes, in words."""
    if cfg.train_vision in ("none", "", None):
        return "the text encoder"
    k = cfg.train_vision.split("-", 1)[1] if cfg.train_vision.startswith("last-") else None
    return ("the text encoder and the whole vision tower" if k is None else
            f"the text encoder and the last {k} vision layer{'s' if k != '1' else ''}")


def text_tower_changed(a, b) -> float:
    """Largest absolute weight difference between two models' text towers."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max())
               for k in sa if k.startswith(a.family.text_prefixes))


# --- charts ----------------------------------------------------------------------------------

def chart_metrics(before: dict, after: dict, path: Path, ablation: dict | None = None,
                  title: str | None = None, metrics: tuple[str, ...] = METRICS,
                  labels: dict[str, str] | None = None, ylabel: str = "fraction (test split)") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"base": before, "fine-tuned": after}
    if ablation:
        rows = {"base": before, **{f"{k}": v["metrics"] for k, v in ablation.items()}}
    n = len(rows)
    w = 0.8 / n
    fig, ax = plt.subplots(figsize=(10, 4.2))
    xs = range(len(metrics))
    for j, (label, m) in enumerate(rows.items()):
        vals = [m[k] for k in metrics]
        bars = ax.bar([x + (j - (n - 1) / 2) * w for x in xs], vals, w, label=label)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", fontsize=7)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    names = labels or METRIC_LABELS
    ax.set_xticks(list(xs), [names[k].replace(", ", ",\n").replace(" (", "\n(") for k in metrics],
                  fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title or ("NegWorld test set: before and after NegationCLIP fine-tuning" +
                           (" (ablation)" if ablation else "")))
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pair_choices(bundles: dict, world, pairs: list) -> dict[str, list[bool]]:
    """For each model, whether it chose the right image (the one without the negated object)."""
    from .models import encode_images, encode_text

    out = {}
    for name, b in bundles.items():
        img = encode_images(b, [str(world.root / p.image) for p in pairs], show_progress=False)
        foil = encode_images(b, [str(world.root / p.foil_image) for p in pairs], show_progress=False)
        t = encode_text(b, [p.text for p in pairs], show_progress=False)
        out[name] = ((img * t).sum(-1) > (foil * t).sum(-1)).tolist()
    return out


def pick_grid_pairs(world, n: int, seed: int) -> list:
    """Test pairs for the picture grid: a seeded sample, half of them with held-out phrasing."""
    import random

    from .data.negworld import load_negation_pairs

    pairs = [p for p in load_negation_pairs(world.negation_pairs) if p.split == "test"]
    rng = random.Random(seed)
    held = [p for p in pairs if p.heldout_phrasing]
    trained = [p for p in pairs if not p.heldout_phrasing]
    k = min(len(held), n // 2)
    return rng.sample(trained, min(len(trained), n - k)) + rng.sample(held, k)


def chart_pairs(world, pairs: list, choices: dict[str, list[bool]], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .models import open_image

    names = list(choices)
    fig, axes = plt.subplots(len(pairs), 2, figsize=(6.4, 2.05 * len(pairs)), squeeze=False)
    for i, p in enumerate(pairs):
        for j, (rel, right) in enumerate(((p.image, True), (p.foil_image, False))):
            ax = axes[i][j]
            ax.imshow(open_image(world.root / rel), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            chose = [n for n in names if choices[n][i] == right]
            ax.set_xlabel(("no " if right else "has ") + p.negated_object + "  |  chosen by: "
                          + (", ".join(chose) if chose else "-"), fontsize=7)
            for s in ax.spines.values():
                s.set_edgecolor("green" if right else "red")
                s.set_linewidth(2)
        axes[i][0].set_title(f"\"{p.text}\"" + ("  [held-out phrasing]" if p.heldout_phrasing else ""),
                             fontsize=7, loc="left")
    fig.suptitle("Negated query: which image does each model pick? (green = correct)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / len(pairs)))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- report ------------------------------------------------------------------------------------

def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _examples(path: Path, k: int) -> list[dict]:
    recs = read_jsonl(path)
    keep = ("image_file", "original", "negated", "affirmed", "object", "question", "pipeline")
    step = max(1, len(recs) // k)
    return [{f: r.get(f) for f in keep if r.get(f) is not None} for r in recs[::step][:k]]


def targets(before: dict, after: dict) -> dict[str, dict]:
    # issue 13, item 5 ("beat the paper on NegWorld")
    t = {"negation_balanced": (">= 0.75", after["negation_balanced"] >= 0.75),
         "negation_heldout_phrasing": (">= 0.70", after["negation_heldout_phrasing"] >= 0.70),
         "negref": (">= 0.55", after["negref"] >= 0.55),
         "valse_existence": (">= 0.70", after["valse_existence"] >= 0.70),
         "retrieval_i2t_r1": ("within 0.02 of base",
                              after["retrieval_i2t_r1"] >= before["retrieval_i2t_r1"] - 0.02),
         "retrieval_t2i_r1": ("within 0.02 of base",
                              after["retrieval_t2i_r1"] >= before["retrieval_t2i_r1"] - 0.02)}
    return {k: {"target": a, "met": bool(b)} for k, (a, b) in t.items()}


_KIND_TEXT = {
    "parts": "negations of one property of one object on its crop, against the same crop with "
             "the property given to it",
    "absence": "\"there are no Ys\" against the scene with Y put in",
    "presence": "presence negation: \"there is no X\" for a shown X as a false text",
}


def recipe_paragraph(c: dict) -> str:
    """One paragraph: which fine-tuning recipe this run used and why it is the demo's."""
    from .data.negworld.scene_records import parse_kinds

    f = c["finetune"]
    kinds = parse_kinds(c.get("scene_records") or "")
    vision = c.get("train_vision") or "none"
    who = ("Text tower only (the vision tower frozen, as in the paper)" if vision == "none" else
           f"The text tower and the vision tower's `{vision}` (`--train-vision {vision}`: the "
           f"earlier vision layers frozen, their output computed once)")
    text = (f"{who}, CLIP's contrastive loss "
            f"on P1 + P2 negated captions with {f['original_ratio']:.0%} original captions mixed in, "
            f"{f['max_steps']} steps of batch {f['batch_size']} at a constant lr {f['lr']}; every "
            f"negated caption also has a negative image (the same scene with the negated object "
            f"put in) and a hinge (margin {f['hard_negative_margin']}, weight "
            f"{f['hard_negative_weight']}) asking the text to prefer its own image.")
    if kinds:
        frac = c.get("scene_presence_fraction", 1.0)
        text += (" Added: NegWorld's scene-graph records ("
                 + "; ".join(_KIND_TEXT[k] + (f", for {frac:.0%} of the scenes"
                                              if k == "presence" and frac < 1 else "")
                             for k in kinds)
                 + "). Why: scene captions never negate a property of one object, so P1 + P2 "
                 "alone leave NegRef (crops, \"the square without a dot\") below chance, and "
                 "they never state existence; minimal twins teach exactly the contrast each "
                 "benchmark asks about, from train scenes only and with training phrasings only. "
                 "They need the scene graph: on real data use P1 + P2 (`--scene-records none`).")
    else:
        text += " No scene-graph records (`--scene-records none`): P1 + P2 only, as in the paper."
    props = c.get("scene_part_properties") or ""
    if "parts" in kinds and props and "size" not in props:
        text += (f" Part records negate only {props.replace(',', ', ')}, not size "
                 "(`--part-properties`): the crop grows with the object, so an object and its "
                 "re-sized twin look the same to the model and that pair only adds noise.")
    opts = f.get("method_options") or {}
    if opts.get("prototype_weight"):
        text += (f" The prototype hinge (`--prototype-weight {opts['prototype_weight']}`) asks each "
                 "negated text to point along the batch's mean (image - negative image) direction "
                 "of the rows negating the same object or attribute, which keeps what those pairs "
                 "share and averages out the rest; it lifts balanced and held-out phrasing.")
    if opts.get("keep_weight"):
        text += (f" The keep term (`--keep-weight {opts['keep_weight']}`) holds the original "
                 "captions' text features at the base model's: the harder push on negation "
                 "otherwise collapses image-text retrieval.")
    if vision != "none":
        text += (" Why the vision layer: with the tower frozen, the best text-only rule reaches "
                 "the ceiling measured by `negationclip ceiling`; training the last layer lets "
                 "the image side separate scenes that differ in one object.")
    return text


def report_markdown(rep: dict) -> str:
    b, a, c = rep["before"], rep["after"], rep["config"]
    d = rep["details"]
    pairs_b = d["before"]["negation_pairs"]
    lines = [
        "# NegationCLIP demo on NegWorld",
        "",
        f"Mode: {'quick (small world, short fine-tune: a smoke test, not the result)' if c['quick'] else 'full'}"
        f"; seed {c['seed']}; total wall time {rep['wall_seconds']:.0f} s.",
        "",
        "## What happened",
        "",
        f"1. **NegWorld** rendered {d['world']['counts']['images']} scenes (seed {d['world']['seed']}) and "
        f"exported them as COCO captions/instances, VQAv2, NegRefCOCOg, VALSE and balanced negation "
        f"pairs. Split: {d['world']['counts']['split_images']}. All figures below are on the "
        f"**test** split: {pairs_b['total']} balanced pairs, {d['before']['negref']['total']} NegRef "
        f"items, {d['before']['valse_existence']['total']} VALSE items, "
        f"{d['before']['retrieval']['images']} images for retrieval.",
        f"2. **Base model**: `{c['base']}`: a tiny CLIP pretrained from scratch on NegWorld's "
        f"train captions, which (like web captions) never negate. "
        + ("This world uses another seed, so none of its images was seen in pretraining."
           if c["quick"] else "Its pretraining used the train split only."),
        "3. **Generation** with the offline `rules` backends (no LLM): "
        + ", ".join(f"{k}: {v['records']} records" for k, v in d["generation"].items()
                    if k != "scene_negatives") + ".",
        f"4. **Fine-tuning** of "
        + ("the text encoder only (vision tower frozen)"
           if (c.get("train_vision") or "none") == "none"
           else f"the text encoder and the vision tower's `{c['train_vision']}`")
        + f": {c['finetune']['max_steps']} "
        f"steps, batch {c['finetune']['batch_size']}, lr {c['finetune']['lr']}, mix "
        f"`{c['finetune']['mix']}`, hard negatives `{c['finetune']['hard_negatives']}`"
        + (f" with margin {c['finetune']['hard_negative_margin']}" if c['finetune']['hard_negative_margin'] else "")
        + (", negative images: the same scene with the negated object put in (NegWorld's scene graph)"
           if c['scene_negatives'] else "")
        + (", other rows: a train image whose captions show the object (mined)"
           if c['finetune']['mine_negative_images'] else "")
        + f", hinge weight {c['finetune']['hard_negative_weight']}"
        + "".join(f", {k.replace('_', ' ')} {v}" for k, v in
                  (c['finetune'].get('method_options') or {}).items())
        + (f"; best checkpoint by validation loss (step {d['finetune']['best_step']}). "
           if c['finetune']['val_fraction'] else "; the last weights are the result. ")
        + 
        f"Largest text-weight change: {d['finetune']['text_weight_change']:.2e}.",
        "5. The same benchmarks on the fine-tuned model.",
        "",
        "## The recipe, and why",
        "",
        recipe_paragraph(c),
        "",
        "## What the base model got wrong",
        "",
        f"Given a negated text such as *\"{d['grid_examples'][0]['text']}\"* and two images that differ "
        f"only in the negated object, the base model picks the right image in "
        f"{_pct(b['negation_balanced'])} of the test pairs (chance is 50%): it reads "
        f"\"no {d['grid_examples'][0]['negated_object']}\" as \"{d['grid_examples'][0]['negated_object']}\" "
        f"and prefers the image that *has* it.",
        "",
        "## Results (test split)",
        "",
        "| metric | base | fine-tuned | change |",
        "|---|---|---|---|",
    ]
    for k in METRICS:
        lines.append(f"| {METRIC_LABELS[k]} (`{k}`) | {_pct(b[k])} | {_pct(a[k])} | "
                     f"{100 * (a[k] - b[k]):+.1f} pts |")
    if all(k in b and k in a for k in FIELD_METRICS):
        lines += ["", "The field's formats, written by NegWorld for its test scenes and run by the "
                  "evaluate plug-ins (`negbench-mcq`, `negbench-retrieval`, `ccneg`, `sugarcrepe`):", "",
                  "| metric | base | fine-tuned | change |", "|---|---|---|---|"]
        for k in FIELD_METRICS:
            lines.append(f"| {METRIC_LABELS[k]} (`{k}`) | {_pct(b[k])} | {_pct(a[k])} | "
                         f"{100 * (a[k] - b[k]):+.1f} pts |")
    lines += ["", "Targets: " + "; ".join(f"`{k}` {v['target']}: {'met' if v['met'] else 'NOT met'}"
                                          for k, v in rep["targets"].items()) + ".", ""]
    if rep.get("ablation"):
        lines += ["## Ablation (the paper's Table 3 on NegWorld; same base, same budget)", "",
                  "| data | records | " + " | ".join(f"`{k}`" for k in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS),
                  "| base | - | " + " | ".join(_pct(b[k]) for k in METRICS) + " |"]
        for name, row in rep["ablation"].items():
            lines.append(f"| {name} | {row['records']} | " + " | ".join(_pct(row["metrics"][k]) for k in METRICS) + " |")
        lines.append("")
    lines += ["## Generated data: three example records", ""]
    for ex in d["examples"]:
        lines.append("```json\n" + json.dumps(ex, indent=1, ensure_ascii=False) + "\n```")
    lines += ["", "## Charts", "", "![before/after](metrics.png)", "",
              "![the field's formats](field.png)", "",
              "![negated queries](pairs.png)", "",
              "## Stage times (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rep["stage_seconds"].items()]
    lines += ["", "Files: `report.json` (all numbers), `world/` (the export), `generated/` (records), "
              "`finetune/` (run log, loss curve, `best/` model).", ""]
    return "\n".join(lines)


# --- the demo ------------------------------------------------------------------------------------

def run_demo(cfg: DemoConfig) -> dict:
    """Run the loop and write ``report.json``, ``report.md``, ``metrics.png``, ``pairs.png``."""
    from .models import ImageEmbeddingCache, load_clip
    from .train.pretrain import read_record

    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stage = _Stages(7 + (1 if cfg.ablation else 0))
    cache = ImageEmbeddingCache(out / "image_cache")
    base_dir = base_model_dir(cfg)
    base_record = read_record(base_dir)
    limit = None

    with stage("NegWorld export"):
        wcfg = world_config(cfg, base_record)
        world, reused = ensure_world(wcfg, out / "world")
        print(f"      {'reused' if reused else 'built'} {world.root} ({wcfg.images} scenes, seed {wcfg.seed})")

    with stage("baseline benchmarks (base model)"):
        base = load_clip(base_dir, act=cfg.act)
        before, det_before = measure(base, world, cache, "base")
        _print_metrics(before)

    gen_dir = out / "generated"
    gen: dict[str, Any] = {}
    with stage("generation: P1 and P2 (rules backends)"):
        for which in ("P1", "P2"):
            s = generate(world, gen_dir / f"{which.lower()}.jsonl", which, cfg.seed, limit)
            gen[which] = {"records": s.get("records", 0), "summary": s}
            print(f"      {which}: {gen[which]['records']} records")
        if cfg.scene_records:
            s = scene_graph_records(world, gen_dir / "scene-graph.jsonl", cfg)
            n_sg = sum(s.get(k, 0) for k in ("parts", "absence", "presence"))
            gen["scene-graph"] = {"records": n_sg,
                                  "summary": s}

    data_name = "P1 + P2" + (" + scene-graph records" if cfg.scene_records else "")
    with stage(f"fine-tuning {tuned_part(cfg)} on {data_name}"):
        train_files = [gen_dir / "p1.jsonl", gen_dir / "p2.jsonl"]
        if cfg.scene_negatives:
            train_files = [scene_negatives(world, f, cfg.seed, gen) for f in train_files]
        if cfg.scene_records:
            train_files.append(gen_dir / "scene-graph.jsonl")
        res = run_finetune(base_dir, train_files, world, out / "finetune", cfg, cache)
        tuned = res.bundle
        change = text_tower_changed(base, tuned)
        if change == 0.0:
            raise NegationClipError("fine-tuning left the text encoder unchanged")

    with stage("benchmarks (fine-tuned model)"):
        after, det_after = measure(tuned, world, cache, "fine-tuned")
        _print_metrics(after, before)

    ablation = None
    if cfg.ablation:
        with stage("ablation: P1, Rand-P1, P2, P1+P2 (same base, same budget)"):
            s = generate(world, gen_dir / "rand-p1.jsonl", "Rand-P1", cfg.seed, limit)
            gen["Rand-P1"] = {"records": s.get("records", 0), "summary": s}
            files = {"P1": [gen_dir / "p1.jsonl"], "Rand-P1": [gen_dir / "rand-p1.jsonl"],
                     "P2": [gen_dir / "p2.jsonl"]}
            if cfg.scene_negatives:
                files = {k: [scene_negatives(world, f, cfg.seed, gen) for f in v]
                         for k, v in files.items()}
            files["P1+P2"] = files["P1"] + files["P2"]
            ablation = {}
            for name in ABLATION_ROWS + ((RECIPE_ROW,) if cfg.scene_records else ()):
                if name == RECIPE_ROW or (name == "P1+P2" and not cfg.scene_records):
                    m = after  # the demo's own fine-tune
                else:
                    r = run_finetune(base_dir, files[name], world, out / "ablation" / name.lower(),
                                     cfg, cache)
                    m, _ = measure(r.bundle, world, cache, name)
                n_rec = sum(gen[k]["records"] for k in
                            {"P1+P2": ("P1", "P2"), RECIPE_ROW: ("P1", "P2", "scene-graph")}.get(name, (name,)))
                ablation[name] = {"metrics": m, "records": n_rec}
                print(f"      {name}: " + ", ".join(f"{k} {m[k]:.3f}" for k in METRICS))

    with stage("charts"):
        chart_metrics(before, after, out / "metrics.png")
        chart_metrics(before, after, out / "field.png", metrics=FIELD_METRICS,
                      title="The field's formats on NegWorld's test scenes: before and after")
        if ablation:
            chart_metrics(before, after, out / "ablation.png", ablation)
        grid = pick_grid_pairs(world, cfg.grid_pairs, cfg.seed)
        choices = pair_choices({"base": base, "fine-tuned": tuned}, world, grid)
        chart_pairs(world, grid, choices, out / "pairs.png")

    with stage("report"):
        examples = _examples(gen_dir / "p1.jsonl", 2) + _examples(gen_dir / "p2.jsonl", 1)
        rep = {
            "before": before, "after": after, "wall_seconds": round(time.time() - t_start, 1),
            "config": {**dataclasses.asdict(cfg), "base": str(base_dir),
                       "finetune": train_config(cfg).to_dict(), "world": dataclasses.asdict(wcfg),
                       "torch_threads": torch.get_num_threads()},
            "targets": targets(before, after),
            "ablation": ablation,
            "stage_seconds": stage.seconds,
            "details": {
                "before": det_before, "after": det_after,
                "field_seconds": {"before": det_before.pop("field_timing", {}).get("seconds"),
                                  "after": det_after.pop("field_timing", {}).get("seconds")},
                "world": {"seed": wcfg.seed, "counts": world.manifest["counts"]},
                "base_model": {"dir": str(base_dir), "pretrain_command": base_record.get("command"),
                               "pretrain_figures": base_record.get("figures")},
                "generation": {k: ({"records": v["records"]} if k != "scene_negatives" else v)
                               for k, v in gen.items()},
                "finetune": {**res.summary(), "text_weight_change": change},
                "examples": examples,
                "grid_examples": [{"text": p.text, "negated_object": p.negated_object,
                                   "heldout_phrasing": p.heldout_phrasing,
                                   **{f"{n}_correct": choices[n][i] for n in choices}}
                                  for i, p in enumerate(grid)],
            },
        }
        rep["stage_seconds"]["report"] = 0.0
        rep["wall_seconds"] = round(time.time() - t_start, 1)
        atomic_write_json(out / "report.json", rep)
        atomic_write_text(out / "report.md", report_markdown(rep))
        write_html_report(rep, out / "report.html", title="negationclip demo: NegWorld before and after", images=pair_examples(world.root, grid, choices))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'} ({rep['wall_seconds']:.0f} s)")
    if cfg.compare:
        from .compare import CompareConfig, run_compare

        print("compare: every training method from the same base on this world", flush=True)
        run_compare(CompareConfig(out=str(out / "compare"), quick=cfg.quick, seed=cfg.seed,
                                  base=cfg.base, threads=cfg.threads, world=str(world.root),
                                  cache_dir=str(out / "image_cache"), quick_images=cfg.quick_images))
    return rep


def _print_metrics(m: dict, before: dict | None = None) -> None:
    for k in METRICS:
        extra = f"  ({100 * (m[k] - before[k]):+.1f} pts)" if before else ""
        print(f"      {k:<27} {m[k]:.3f}{extra}")
