"""The multi-model, multi-benchmark driver behind ``negationclip eval``.

Models are evaluated one at a time (each loaded once for all its benchmarks) and every image
embedding goes through one shared ``ImageEmbeddingCache``. ``results.json`` is rewritten
after each benchmark, so a killed run resumes: finished (model, benchmark) pairs are kept and
skipped unless ``overwrite`` is set. A benchmark that fails (a bad input file, too many
missing images) is recorded under ``errors``, reported on stderr, and the others still run.
Benchmarks are plug-ins (``registry.py``, ``benchmarks/``); beside ``results.json`` each
(model, benchmark) result is also written in CLIP_benchmark's layout under
``<out>/clip_benchmark/``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..utils import NegationClipError, atomic_write_json, checks, load_json
from ..utils.progress import progress
from .html_report import write_html_report
from .metrics import tie_tolerance
from .registry import Benchmark, RunContext, registry, resolve_name
from .report import FORMAT, _safe, headline, new_results, software_versions, write_report


@dataclass
class EvalConfig:
    """How to run (shared by every benchmark) and ``inputs``: each benchmark plug-in's inputs
    by name (``registry.default_inputs()`` gives them all at their defaults). Asking for a
    benchmark whose required inputs are missing is an error naming its options."""

    out_dir: str = "eval-results"
    cache_dir: str | None = None  # None: the default shared cache; "none": in memory only
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64
    max_missing: float = 0.05
    limit: int | None = None  # first N items per benchmark (quick looks)
    overwrite: bool = False
    charts: bool = True
    inputs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:  # the CLI's rules for the Python API too (utils.checks)
        self.batch_size = checks.positive_int(self.batch_size, "eval: batch_size")
        self.limit = checks.optional_positive_int(self.limit, "eval: limit")
        self.max_missing = checks.probability(self.max_missing, "eval: max_missing")

    def all_inputs(self) -> dict:
        from .registry import default_inputs

        return default_inputs() | {k: v for k, v in self.inputs.items() if v is not None}


@dataclass
class Unit:
    """One result key of one benchmark: ``negrefcocog``, ``valse:existence``, ..."""

    key: str
    benchmark: Benchmark
    payload: Any


def plan_benchmarks(names: list[str], cfg: EvalConfig, *, errors: dict | None = None) -> list[Unit]:
    """The result keys to compute, in order: aliases resolved, multi-file benchmarks expanded,
    inputs checked and read (before any model loads).

    An unknown name or a missing required option raises. A benchmark whose files cannot be
    read is recorded in ``errors`` (key -> message) when given, so the others still run;
    without ``errors`` it raises.
    """
    inputs = cfg.all_inputs()
    planned: dict[str, Unit] = {}
    units_of: dict[str, dict] = {}
    for raw in names:
        bench, part = resolve_name(raw)
        bench.check(inputs)
        if bench.name not in units_of:
            try:
                units_of[bench.name] = bench.plan(inputs)
            except NegationClipError as e:
                if errors is None:
                    raise
                errors[bench.name] = str(e)
                units_of[bench.name] = {}
                continue
        units = units_of[bench.name]
        if part is not None:
            key = f"{bench.name}:{part}"
            if key not in units:
                if bench.name in (errors or {}):
                    continue
                have = ", ".join(k.split(":", 1)[-1] for k in units) or "none"
                raise NegationClipError(f"no {bench.name} part {part!r} in the given inputs (have: {have})")
            planned.setdefault(key, Unit(key, bench, units[key]))
        else:
            for key, payload in units.items():
                planned.setdefault(key, Unit(key, bench, payload))
    return list(planned.values())


def expand_benchmarks(names: list[str], cfg: EvalConfig) -> list[str]:
    """The result keys ``names`` stand for (see ``plan_benchmarks``)."""
    return [u.key for u in plan_benchmarks(names, cfg)]


def run_unit(unit: Unit, bundle, cfg: EvalConfig, *, cache=None, model_name: str | None = None,
             missing_out: str | os.PathLike | None = None) -> dict:
    """One benchmark key on one loaded model."""
    ctx = RunContext(cache=cache, batch_size=cfg.batch_size, max_missing=cfg.max_missing,
                     limit=cfg.limit, missing_out=missing_out, model_name=model_name,
                     tie_tol=tie_tolerance(cfg.dtype))
    res = unit.benchmark.run(bundle, unit.payload, cfg.all_inputs(), ctx)
    res["benchmark"] = unit.key
    return res


def run_benchmark(name: str, bundle, cfg: EvalConfig, **kw) -> dict:
    """One benchmark key (e.g. ``negrefcocog``, ``valse:existence``) on one loaded model."""
    units = [u for u in plan_benchmarks([name], cfg)]
    if len(units) != 1:
        raise NegationClipError(f"{name!r} stands for {len(units)} results; name one of "
                                f"{', '.join(u.key for u in units)}")
    return run_unit(units[0], bundle, cfg, **kw)


def list_benchmarks() -> str:
    """The text of ``negationclip eval --list``."""
    lines = []
    for b in registry().values():
        opts = ", ".join(i.option for i in b.inputs)
        lines.append(f"{b.name:<20}{b.summary}")
        if b.aliases:
            lines.append(f"{'':<20}aliases: {', '.join(b.aliases)}")
        lines.append(f"{'':<20}inputs: {opts}")
        if b.official:
            lines.append(f"{'':<20}official rule: {b.official}")
    return "\n".join(lines)


def clip_benchmark_dumps(unit: Unit, label: str, source: str, result: dict) -> list[tuple[str, dict]]:
    """(file name, object) in CLIP_benchmark's layout ``{dataset, model, pretrained, task,
    metrics, language}`` for one (model, benchmark) result."""
    metrics = {k: v for k, v in result.items() if k not in ("benchmark", "model", "items")}
    sets = unit.benchmark.dumps(unit.key, result) if unit.benchmark.dumps else []
    sets = sets or [(unit.key, metrics)]
    out = []
    for dataset, m in sets:
        obj = {"dataset": dataset, "model": label, "pretrained": source,
               "task": unit.benchmark.task, "metrics": m, "language": "en"}
        out.append((_safe(f"{dataset}_{label}_en_{unit.benchmark.task}") + ".json", obj))
    return out


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``LABEL=SOURCE`` or just ``SOURCE`` (label: the source as given, minus a trailing '/')."""
    label, sep, source = spec.partition("=")
    if sep and label and "/" not in label and os.sep not in label and source:
        return label, source
    return spec.rstrip("/"), spec


def _load_previous(path: Path) -> dict | None:
    if not path.exists():
        return None
    prev = load_json(path)
    if not isinstance(prev, dict) or prev.get("format") != FORMAT:
        raise NegationClipError(f"{path}: not a negationclip results file; choose another "
                                f"--out or pass --overwrite")
    return prev


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def run_eval(models: list[str], benchmarks: list[str], cfg: EvalConfig, *,
             loader: Callable | None = None, log: Callable[[str], None] = print,
             log_error: Callable[[str], None] = _stderr) -> dict:
    """Evaluate every model on every benchmark; returns the results object (also written to
    ``cfg.out_dir`` with the Markdown table, charts and CLIP_benchmark-layout JSONs).
    ``loader(source, device, dtype)`` defaults to ``models.load_clip`` (tests pass a
    tiny-model factory). Per-benchmark errors go to ``results["errors"]`` and ``log_error``."""
    from ..models import ImageEmbeddingCache, load_clip
    from ..models.load import parse_dtype

    if not models:
        raise NegationClipError("eval: give at least one --model")
    if not benchmarks:
        raise NegationClipError("eval: give at least one --benchmark")
    plan_errors: dict[str, str] = {}
    units = plan_benchmarks(benchmarks, cfg, errors=plan_errors)
    specs = [parse_model_spec(m) for m in models]
    labels = [s[0] for s in specs]
    if len(set(labels)) != len(labels):
        raise NegationClipError(f"eval: two models share a label ({labels}); use LABEL=SOURCE")
    out = Path(cfg.out_dir)
    config = {k: v for k, v in asdict(cfg).items() if v is not None}
    config["inputs"] = {k: v for k, v in cfg.inputs.items() if v not in (None, [])}
    results = None if cfg.overwrite else _load_previous(out / "results.json")
    if results is None:
        results = new_results(config)
    else:
        changed = sorted(k for k in set(config) | set(results.get("config", {}))
                         if k not in ("overwrite", "charts", "out_dir")
                         and config.get(k) != results.get("config", {}).get(k))
        if changed:
            log(f"warning: resuming {out / 'results.json'} made with different settings "
                f"({', '.join(changed)}); earlier results are kept (use --overwrite to redo them)")
    results["config"] = config
    results["software"] = software_versions()
    results["errors"] = {}  # this run's errors only; finished results are kept
    for b, msg in plan_errors.items():
        log_error(f"{b}: error: {msg}")
        for label in labels:
            results["errors"].setdefault(label, {})[b] = msg
    cache = ImageEmbeddingCache(False if cfg.cache_dir == "none" else cfg.cache_dir)
    load = loader or (lambda src, device, dtype: load_clip(src, device=device, dtype=dtype))
    for label, source in specs:
        todo = [u for u in units if u.key not in results["results"].get(label, {})]
        if not todo:
            if units:
                log(f"{label}: all benchmarks already in {out / 'results.json'} (resume)")
            continue
        try:
            bundle = load(source, cfg.device, parse_dtype(cfg.dtype))
        except NegationClipError as e:
            for u in todo:
                results["errors"].setdefault(label, {})[u.key] = f"model failed to load: {e}"
            log_error(f"{label}: error: {e}")
            write_report(results, out, charts=False)
            continue
        results["models"][label] = dict(getattr(bundle, "provenance", {}) or {}) | {"source": source}
        for u in progress(todo, desc=label, unit="benchmark"):
            t0 = time.perf_counter()
            try:
                res = run_unit(u, bundle, cfg, cache=cache, model_name=label,
                               missing_out=out / "missing" / f"{_safe(u.key)}.txt")
            except NegationClipError as e:
                results["errors"].setdefault(label, {})[u.key] = str(e)
                log_error(f"{label} / {u.key}: error: {e}")
            else:
                for name, obj in clip_benchmark_dumps(u, label, source, res):
                    atomic_write_json(out / "clip_benchmark" / name, obj)
                results["results"].setdefault(label, {})[u.key] = res
                results["errors"].get(label, {}).pop(u.key, None)
                key, val = headline(res)
                shown = "n/a" if val is None else f"{100 * val:.2f}%"
                log(f"{label} / {u.key}: {key} {shown} ({time.perf_counter() - t0:.1f}s)")
            write_report(results, out, charts=False)
        del bundle
        gc.collect()
    results["errors"] = {m: e for m, e in results["errors"].items() if e}
    write_report(results, out, charts=cfg.charts)
    write_html_report(results, out / "report.html", title="negationclip evaluation")
    return results
