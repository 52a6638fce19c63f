"""``negationclip compare``: the field's training methods head to head.

On NegWorld (the default): same base model, same data (P1 + P2 from the rules backends, with
scene-graph negative images), same number of optimizer steps and batch size (so the same number
of training rows seen), same test-split benchmarks as the demo; only the objective and what it
trains differ (each method's released recipe otherwise, the lr excepted: one value for all,
since the released ones are for pretrained ViT-B CLIPs). It chains the stage modules (``demo``
for the world, generation and benchmarks, ``train``), plus the text-only ceiling row.

On real data (``data`` set, ``--data``): the user's records (generation JSONL, COCO-format
captions: whatever ``negationclip train`` reads), images and base model; every method is
trained on the same records with the same steps, batch and seed, then the base and every
trained model go through ``evaluate.runner.run_eval`` on the user's benchmark files (the
``eval`` plug-ins and their options). A method whose data needs are missing (a record field,
a model family it is not written for) is not trained: its row says why and how to make the
field, and the others run. Both write ``compare.json``, ``compare.md`` and ``compare.png``.
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
    lr: float | None = None            # one lr for all; None: 1e-3 on NegWorld (the tiny scratch
    #                                    base needs the demo's), each method's released lr on --data
    train_vision: str | None = None    # None: each method's released setting
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    quick_images: int = 400
    quick_steps: int = 25
    quick_batch_size: int = 64
    world: str | None = None           # NegWorld export to use (`demo --compare`: the demo's)
    cache_dir: str | None = None       # image-embedding cache (default OUT/image_cache)
    ceiling: bool | None = None        # the text-only ceiling row; None: on, off for --quick
    # real data (``negationclip compare --data``): no NegWorld, the user's files
    data: tuple[str, ...] = ()         # caption files, as `negationclip train --data` reads
    images: str | None = None          # folder the records' image names are relative to
    instances: tuple[str, ...] = ()    # COCO-format instances (tng, omni read them)
    benchmarks: tuple[str, ...] = ()   # `negationclip eval` benchmark names
    benchmark_inputs: dict[str, Any] = field(default_factory=dict)  # their inputs by name
    device: str = "cpu"
    max_missing: float = 0.05          # as `negationclip eval --max-missing`
    limit: int | None = None           # as `negationclip eval --limit`

    def wants_ceiling(self) -> bool:
        if self.ceiling is None:
            return not self.quick and not self.data
        return self.ceiling

    def budget(self) -> tuple[int, int]:
        return (self.quick_steps, self.quick_batch_size) if self.quick else (self.steps, self.batch_size)


def method_config(cfg: CompareConfig, method: str, instances: str):
    """The TrainConfig of one row: the method's recipe with the shared budget on top."""
    from .train.methods import recipe_config

    steps, batch = cfg.budget()
    # the demo's run choices (this project's recipe, fp32 on CPU), so rows differ only by method
    return recipe_config(method, recipe="negationclip", precision="fp32",
                         lr=WORLD_LR if cfg.lr is None else cfg.lr, batch_size=batch, max_steps=steps, epochs=10 ** 6,
                         warmup_steps=0, schedule="constant", val_fraction=0.0, seed=cfg.seed,
                         device="cpu", checkpoint_every_steps=max(50, steps), mix="negated",
                         mine_negative_images=True, instances=[instances],
                         train_vision=cfg.train_vision,
                         method_options=cfg.method_options.get(method, {}))


WORLD_LR = 1e-3  # NegWorld's base is a tiny model pretrained from scratch: the demo's lr


def data_method_config(cfg: CompareConfig, method: str):
    """The TrainConfig of one real-data row: the method's released recipe (its lr too, unless
    ``cfg.lr``) with the shared budget (steps, batch, seed, no validation split) on top."""
    from .train.methods import recipe_config

    over = {} if cfg.lr is None else {"lr": cfg.lr}
    return recipe_config(method, recipe="negationclip", batch_size=cfg.batch_size,
                         max_steps=cfg.steps, epochs=10 ** 6, val_fraction=0.0, seed=cfg.seed,
                         device=cfg.device, checkpoint_every_steps=max(50, cfg.steps),
                         mix="negated", mine_negative_images=True,
                         instances=list(cfg.instances), train_vision=cfg.train_vision,
                         method_options=cfg.method_options.get(method, {}), **over)


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
    if cfg.data:
        return run_compare_data(cfg)
    if cfg.benchmarks or cfg.images or cfg.instances:
        raise NegationClipError("compare: --benchmark, --images and --instances go with --data "
                                "(real data); without --data the comparison runs on NegWorld")
    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = ImageEmbeddingCache(cfg.cache_dir or out / "image_cache")
    dcfg = DemoConfig(out=str(out), quick=cfg.quick, seed=cfg.seed, base=cfg.base,
                      quick_images=cfg.quick_images)
    base_dir = base_model_dir(dcfg)
    if cfg.world:  # the export the user named, as it is (never rebuilt over)
        from .data.negworld import WorldExport
        world, reused = WorldExport.open(cfg.world), True
    else:
        world, reused = ensure_world(world_config(dcfg, read_record(base_dir)), out / "world")
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
                      "lr": tc.lr, "recipe": METHODS[name].recipe, "options": tc.method_options}
        print(f"[4/4] {name}: " + ", ".join(f"{k} {m[k]:.3f}" for k in METRICS), flush=True)
    ceiling = None
    if cfg.wants_ceiling():
        from .evaluate.ceiling import text_only_ceiling

        t = time.time()
        c = text_only_ceiling(base_bundle, world.root, cache=cache, model_name="base",
                              show_progress=False)
        ceiling = {"negation_balanced": c["ceiling"], "scorer": c["ceiling_scorer"],
                   "test_pairs": c["test_pairs"], "train_pairs": c["train_pairs"],
                   "val_pairs": c["val_pairs"], "model_accuracy": c["model_accuracy"],
                   "scorers": c["scorers"],
                   "seconds": round(time.time() - t, 1)}
        print(f"ceiling: text-only bound on negation_balanced {c['ceiling']:.3f} "
              f"({c['ceiling_scorer']})", flush=True)
    report = {"mode": "negworld", "config": asdict(cfg), "base": base_metrics, "methods": rows, "ceiling": ceiling,
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
             f"{steps} steps of batch {batch} for every method, lr "
             f"{WORLD_LR if c['lr'] is None else c['lr']:g} for all; otherwise "
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


# --- real data -------------------------------------------------------------------------------

def run_compare_data(cfg: CompareConfig) -> dict:
    """Every method of ``cfg.methods`` trained from ``cfg.base`` on ``cfg.data``, then the base
    and each trained model on ``cfg.benchmarks`` (``run_eval``); writes and returns the report.

    Everything that can be checked is checked before the first step: the benchmarks' inputs
    (read by their plug-ins), the caption files, each method's data needs. A method that cannot
    run on these records (a missing field, a model family it is not written for) becomes a
    skipped row with the reason; a bad file is an error naming it.
    """
    from .evaluate.registry import registry
    from .evaluate.report import headline
    from .evaluate.runner import EvalConfig, plan_benchmarks, run_eval
    from .models import ImageEmbeddingCache, load_clip
    from .train import finetune
    from .train.data import read_records
    from .train.methods import METHODS, get_method

    if not cfg.base:
        raise NegationClipError("compare --data: give --base (the model every method starts from: "
                                "a Hugging Face id or folder, an OpenAI/open_clip checkpoint)")
    if not cfg.benchmarks:
        raise NegationClipError("compare --data: give at least one --benchmark with its files "
                                "(the options of `negationclip eval`; `negationclip eval --list`)")
    if cfg.world or cfg.quick:
        raise NegationClipError("compare --data: --world and --quick are NegWorld options")
    if cfg.ceiling:
        raise NegationClipError("compare --data: the text-only ceiling row needs NegWorld's scene "
                                "graphs (`negationclip ceiling --world W`); drop --ceiling")
    if cfg.images is not None and not Path(cfg.images).is_dir():
        raise NegationClipError(f"--images {cfg.images}: not a folder")
    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else out / "image_cache"
    ecfg = EvalConfig(out_dir=str(out / "eval"), cache_dir=str(cache_dir), device=cfg.device,
                      max_missing=cfg.max_missing, limit=cfg.limit, overwrite=True,
                      inputs=dict(cfg.benchmark_inputs))
    units = plan_benchmarks(list(cfg.benchmarks), ecfg)  # bad benchmark files fail here
    read = read_records(list(cfg.data))  # a bad caption file fails here, naming file and row
    if not read.records:
        raise NegationClipError(f"compare --data: no usable records in {', '.join(cfg.data)} "
                                f"({read.summary()})")
    print(f"[1/3] data: {read.summary()} from {len(cfg.data)} file(s)", flush=True)
    cache = ImageEmbeddingCache(cache_dir)
    base = load_clip(cfg.base, device=cfg.device)
    family = base.family.name
    rows: dict[str, dict] = {}
    for name in cfg.methods:
        tc = data_method_config(cfg, name)
        reason = None
        m = get_method(name, tc.method_options)
        try:
            m.check_family(base.family)
            m.check_records(read.records, tc)
        except NegationClipError as e:
            reason = str(e)
        if reason:
            rows[name] = {"status": "skipped", "reason": reason}
            print(f"[2/3] {name}: skipped: {reason}", flush=True)
    todo = [n for n in cfg.methods if n not in rows]
    if not todo:
        raise NegationClipError("compare --data: no method can run on these records:\n"
                                + "\n".join(f"  {n}: {r['reason']}" for n, r in rows.items()))
    for name in todo:
        t = time.time()
        tc = data_method_config(cfg, name)
        res = finetune(base, read.records, tc, out / "runs" / name, image_root=cfg.images,
                       cache=cache, verbose=False)
        rows[name] = {"status": "trained", "model": str(res.best_dir), "steps": res.steps,
                      "rows_seen": res.steps * min(cfg.batch_size, res.n_train),
                      "n_train": res.n_train, "skipped": res.skipped,
                      "seconds": round(time.time() - t, 1),
                      "train_vision": tc.train_vision or METHODS[name].train_vision, "lr": tc.lr,
                      "recipe": METHODS[name].recipe, "options": tc.method_options}
        del res
        print(f"[2/3] {name}: {rows[name]['steps']} steps, {rows[name]['rows_seen']} rows seen "
              f"({rows[name]['seconds']} s)", flush=True)
    rows = {n: rows[n] for n in cfg.methods}  # the order asked for
    models = [f"base={cfg.base}"] + [f"{n}={r['model']}" for n, r in rows.items()
                                     if r["status"] == "trained"]
    results = run_eval(models, list(cfg.benchmarks), ecfg,
                       log=lambda msg: None, log_error=lambda msg: print(f"warning: {msg}", flush=True))
    keys = [u.key for u in units]
    metric: dict[str, str] = {}
    table: dict[str, dict[str, float | None]] = {}
    for label in ["base"] + [n for n, r in rows.items() if r["status"] == "trained"]:
        table[label] = {}
        for k in keys:
            res = results["results"].get(label, {}).get(k)
            if res is None:
                table[label][k] = None
                continue
            metric[k], table[label][k] = headline(res)
    print("[3/3] benchmarks: " + "; ".join(
        f"{label} " + ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in t.items())
        for label, t in table.items()), flush=True)
    report = {"mode": "data", "config": asdict(cfg),
              "base": {"source": cfg.base, "family": family},
              "data": {"files": list(cfg.data), "records": len(read.records),
                       "skipped": dict(read.skipped)},
              "benchmarks": {k: {"metric": metric.get(k), "benchmark": u.benchmark.name,
                                 "official": registry()[u.benchmark.name].official}
                             for k, u in zip(keys, units)},
              "methods": rows, "results": table, "errors": results.get("errors", {}),
              "eval": str(out / "eval" / "results.json"),
              "wall_seconds": round(time.time() - t0, 1)}
    atomic_write_json(out / "compare.json", report)
    atomic_write_text(out / "compare.md", data_markdown(report))
    shown = [k for k in keys if all(t.get(k) is not None for t in table.values())]
    if shown:
        from .demo import chart_metrics

        chart_metrics(table["base"], table["base"], out / "compare.png",
                      {n: {"metrics": v} for n, v in table.items() if n != "base"}, metrics=tuple(shown),
                      labels={k: f"{k} ({metric[k]})" for k in shown}, ylabel="fraction",
                      title="The field's methods, same base, data and budget, on your benchmarks")
    print(f"wrote {out / 'compare.md'}, compare.json" + (", compare.png" if shown else "")
          + f"; per-benchmark details in {out / 'eval'}", flush=True)
    return report


def data_markdown(rep: dict) -> str:
    """compare.md of a real-data run: one row per method (skipped ones with their reason)."""
    c = rep["config"]
    keys = list(rep["benchmarks"])
    lr = "each method's released lr" if c["lr"] is None else f"lr {c['lr']:g} for all"
    lines = ["# Training methods head to head", "",
             f"Base `{rep['base']['source']}` ({rep['base']['family']}); data: "
             + ", ".join(f"`{f}`" for f in rep["data"]["files"])
             + f" ({rep['data']['records']} records); {c['steps']} steps of batch {c['batch_size']} "
               f"for every method (the same rows seen), seed {c['seed']}, {lr}; otherwise each "
               "method's released recipe. Figures: each benchmark's headline metric (its "
               "official rule), fractions.", "",
             "| model | vision | " + " | ".join(f"`{k}`" for k in keys) + " | s |",
             "|---|---|" + "---|" * len(keys) + "---|"]

    def cells(label):
        return " | ".join("—" if rep["results"][label].get(k) is None
                          else f"{rep['results'][label][k]:.3f}" for k in keys)

    lines.append(f"| base | - | {cells('base')} | - |")
    for name, r in rep["methods"].items():
        if r["status"] == "trained":
            lines.append(f"| {name} | {r['train_vision']} | {cells(name)} | {r['seconds']} |")
        else:
            lines.append(f"| {name} | skipped | " + " | ".join("—" for _ in keys) + " | - |")
    lines += ["", "Metrics: " + "; ".join(f"`{k}` {v['metric']}" for k, v in rep["benchmarks"].items())
              + f". Per-benchmark details (ties, strict accuracy, parts): `{rep['eval']}`."]
    skipped = {n: r for n, r in rep["methods"].items() if r["status"] == "skipped"}
    if skipped:
        lines += ["", "## Skipped methods (their data needs are missing)", ""]
        lines += [f"- **{n}**: {r['reason']}" for n, r in skipped.items()]
    if rep.get("errors"):
        lines += ["", "## Benchmark errors", ""]
        lines += [f"- {label} / {k}: {msg}" for label, e in rep["errors"].items() for k, msg in e.items()]
    lines += ["", "![methods](compare.png)", ""]
    return "\n".join(lines)
