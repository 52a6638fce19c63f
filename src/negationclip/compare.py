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
    from .demo import (METRICS, DemoConfig, base_model_dir, chart_metrics, ensure_world, generate,
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
    cache = ImageEmbeddingCache(out / "image_cache")
    dcfg = DemoConfig(out=str(out), quick=cfg.quick, seed=cfg.seed, base=cfg.base,
                      quick_images=cfg.quick_images)
    base_dir = base_model_dir(dcfg)
    world, reused = ensure_world(world_config(dcfg, read_record(base_dir)), out / "world")
    print(f"[1/4] NegWorld: {'reused' if reused else 'built'} {world.root}", flush=True)
    base_metrics, _ = measure(load_clip(base_dir), world, cache, "base")
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
    report = {"config": asdict(cfg), "base": base_metrics, "methods": rows, "generation": gen,
              "world": {"root": str(world.root), "reused": reused},
              "wall_seconds": round(time.time() - t0, 1)}
    atomic_write_json(out / "compare.json", report)
    atomic_write_text(out / "compare.md", compare_markdown(report))
    chart_metrics(base_metrics, base_metrics, out / "compare.png",
                  {k: {"metrics": v["metrics"]} for k, v in rows.items()},
                  title="NegWorld test set: the field's methods, same base, data and budget")
    print(f"wrote {out / 'compare.md'}, compare.json, compare.png", flush=True)
    return report


def compare_markdown(rep: dict) -> str:
    from .demo import METRIC_LABELS, METRICS

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
    lines += ["", "Metrics: " + "; ".join(f"`{k}` {METRIC_LABELS[k]}" for k in METRICS) + ".", "",
              "![methods](compare.png)", ""]
    return "\n".join(lines)
