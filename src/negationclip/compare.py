"""``negationclip compare``: the field's training methods head to head on NegWorld.

Same base model, same data (P1 + P2 from the rules backends, with scene-graph negative images),
same number of optimizer steps and batch size (so the same number of training rows seen), same
test-split benchmarks as the demo; only the objective and what it trains differ (each method's
released recipe otherwise, the lr excepted: one value for all, since the released ones are for
pretrained ViT-B CLIPs). Writes ``compare.json``, ``compare.md`` and ``compare.png``.
It chains the stage modules (``demo`` for the world, generation and benchmarks, ``train``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .train.config import METHOD_NAMES
from .utils import NegationClipError, atomic_write_json, atomic_write_text


@dataclass
class CompareConfig:
    out: str = "runs/compare"
    methods: tuple[str, ...] = METHOD_NAMES
    quick: bool = False
    seed: int = 0
    base: str | None = None            # default: the shipped NegWorld base model
    threads: int | None = None
    steps: int = 450                   # the demo's budget, the same for every method
    batch_size: int = 256
    lr: float = 1e-3                   # one lr for all: the tiny scratch base needs the demo's
    train_vision: str | None = None    # None: each method's released setting
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    quick_images: int = 400
    quick_steps: int = 25
    quick_batch_size: int = 64
    world: str | None = None           # NegWorld export to use (`demo --compare`: the demo's)
    cache_dir: str | None = None       # image-embedding cache (default OUT/image_cache)
    ceiling: bool | None = None        # the text-only ceiling row; None: on, off for --quick

    def wants_ceiling(self) -> bool:
        return (not self.quick) if self.ceiling is None else self.ceiling

    def budget(self) -> tuple[int, int]:
        return (self.quick_steps, self.quick_batch_size) if self.quick else (self.steps, self.batch_size)


def method_config(cfg: CompareConfig, method: str, instances: str):
    """The TrainConfig of one row: the method's recipe with the shared budget on top."""
    from .train.methods import recipe_config

    steps, batch = cfg.budget()
    # the demo's run choices (this project's recipe, fp32 on CPU), so rows differ only by method
    return recipe_config(method, recipe="negationclip", precision="fp32", lr=cfg.lr, batch_size=batch, max_steps=steps, epochs=10 ** 6,
                         warmup_steps=0, schedule="constant", val_fraction=0.0, seed=cfg.seed,
                         device="cpu", checkpoint_every_steps=max(50, steps), mix="negated",
                         mine_negative_images=True, instances=[instances],
                         train_vision=cfg.train_vision,
                         method_options=cfg.method_options.get(method, {}))


def run_compare(cfg: CompareConfig) -> dict:
    """Run every method of ``cfg.methods`` from the same base; write and return the report."""
    from .demo import (FIELD_METRICS, METRICS, DemoConfig, base_model_dir, chart_metrics, ensure_world, generate,
                       measure, scene_negatives, world_config)
    from .models import ImageEmbeddingCache, load_clip
    from .train import finetune
    from .train.methods import METHODS
    from .train.pretrain import read_record

    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown or not cfg.methods:
        raise NegationClipError(f"compare: unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = ImageEmbeddingCache(cfg.cache_dir or out / "image_cache")
    dcfg = DemoConfig(out=str(out), quick=cfg.quick, seed=cfg.seed, base=cfg.base,
                      quick_images=cfg.quick_images)
    base_dir = base_model_dir(dcfg)
    world, reused = ensure_world(world_config(dcfg, read_record(base_dir)),
                                  Path(cfg.world) if cfg.world else out / "world")
    print(f"[1/4] NegWorld: {'reused' if reused else 'built'} {world.root}", flush=True)
    base_bundle = load_clip(base_dir)
    base_metrics, _ = measure(base_bundle, world, cache, "base")
    print("[2/4] base model: " + ", ".join(f"{k} {base_metrics[k]:.3f}" for k in METRICS), flush=True)
    gen: dict[str, Any] = {}
    files = []
    for which in ("P1", "P2"):
        path = out / "generated" / f"{which.lower()}.jsonl"
        s = generate(world, path, which, cfg.seed, None)
        gen[which] = {"records": s.get("records", 0)}
        files.append(scene_negatives(world, path, cfg.seed, gen))
    print("[3/4] data: " + ", ".join(f"{k} {v['records']} records" for k, v in gen.items()
                                      if k != "scene_negatives"), flush=True)
    rows: dict[str, dict] = {}
    steps, batch = cfg.budget()
    for name in cfg.methods:
        t = time.time()
        tc = method_config(cfg, name, str(world.instances("train")))
        res = finetune(load_clip(base_dir), [str(f) for f in files], tc, out / "runs" / name,
                       image_root=world.images_dir, cache=cache, verbose=False)
        m, _ = measure(res.bundle, world, cache, name)
        rows[name] = {"metrics": m, "seconds": round(time.time() - t, 1), "steps": res.steps,
                      "rows_seen": res.steps * min(batch, res.n_train), "n_train": res.n_train,
                      "train_vision": tc.train_vision or METHODS[name].train_vision,
                      "recipe": METHODS[name].recipe, "options": tc.method_options}
        print(f"[4/4] {name}: " + ", ".join(f"{k} {m[k]:.3f}" for k in METRICS), flush=True)
    ceiling = None
    if cfg.wants_ceiling():
        from .evaluate.ceiling import text_only_ceiling

        t = time.time()
        c = text_only_ceiling(base_bundle, world.root, cache=cache, model_name="base",
                              show_progress=False)
        ceiling = {"negation_balanced": c["ceiling"], "scorer": c["ceiling_scorer"],
                   "test_pairs": c["test_pairs"], "train_pairs": c["train_pairs"],
                   "seconds": round(time.time() - t, 1)}
        print(f"ceiling: text-only bound on negation_balanced {c['ceiling']:.3f} "
              f"({c['ceiling_scorer']})", flush=True)
    report = {"config": asdict(cfg), "base": base_metrics, "methods": rows, "ceiling": ceiling,
              "generation": gen,
              "world": {"root": str(world.root), "reused": reused},
              "wall_seconds": round(time.time() - t0, 1)}
    atomic_write_json(out / "compare.json", report)
    atomic_write_text(out / "compare.md", compare_markdown(report))
    chart_metrics(base_metrics, base_metrics, out / "compare.png",
                  {k: {"metrics": v["metrics"]} for k, v in rows.items()},
                  title="NegWorld test set: the field's methods, same base, data and budget")
    chart_metrics(base_metrics, base_metrics, out / "compare_field.png",
                  {k: {"metrics": v["metrics"]} for k, v in rows.items()}, metrics=FIELD_METRICS,
                  title="The field's formats on NegWorld's test scenes, per method")
    print(f"wrote {out / 'compare.md'}, compare.json, compare.png, compare_field.png", flush=True)
    return report


def compare_markdown(rep: dict) -> str:
    from .demo import FIELD_METRICS, METRIC_LABELS, METRICS

    c = rep["config"]
    steps, batch = (c["quick_steps"], c["quick_batch_size"]) if c["quick"] else (c["steps"], c["batch_size"])
    lines = ["# Training methods head to head on NegWorld", "",
             f"Same base, same data (P1 + P2, rules backends, scene-graph negative images), "
             f"{steps} steps of batch {batch} for every method, lr {c['lr']} for all; otherwise "
             f"each method's released recipe. Test split; chance on the balanced pairs is 0.5."
             + (" Quick mode: a smoke test, not a result." if c["quick"] else ""), "",
             "| model | vision | " + " | ".join(f"`{k}`" for k in METRICS) + " | s |",
             "|---|---|" + "---|" * len(METRICS) + "---|",
             "| base | - | " + " | ".join(f"{rep['base'][k]:.3f}" for k in METRICS) + " | - |"]
    for name, r in rep["methods"].items():
        lines.append(f"| {name} | {r['train_vision']} | "
                     + " | ".join(f"{r['metrics'][k]:.3f}" for k in METRICS) + f" | {r['seconds']} |")
    ceil = rep.get("ceiling")
    if ceil:
        lines.append(f"| text-only ceiling ({ceil['scorer']}) | frozen | {ceil['negation_balanced']:.3f} | "
                     + " | ".join("-" for _ in METRICS[1:]) + f" | {ceil['seconds']} |")
    lines += ["", "Metrics: " + "; ".join(f"`{k}` {METRIC_LABELS[k]}" for k in METRICS) + "."]
    if ceil:
        lines.append("The ceiling row is `negationclip ceiling` on the same world: the best "
                     "one-vector-per-query scorer over the base's frozen image embeddings, fitted "
                     f"on {ceil['train_pairs']} train pairs, measured on {ceil['test_pairs']} test pairs.")
    lines += ["", "## The field's formats (NegWorld's test scenes, evaluate plug-ins)", "",
              "| model | " + " | ".join(f"`{k}`" for k in FIELD_METRICS) + " |",
              "|---|" + "---|" * len(FIELD_METRICS),
              "| base | " + " | ".join(f"{rep['base'][k]:.3f}" for k in FIELD_METRICS) + " |"]
    for name, r in rep["methods"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r['metrics'][k]:.3f}" for k in FIELD_METRICS) + " |")
    lines += ["", "; ".join(f"`{k}` {METRIC_LABELS[k]}" for k in FIELD_METRICS) + ".", "",
              "![methods](compare.png)", "", "![field formats](compare_field.png)", ""]
    return "\n".join(lines)
