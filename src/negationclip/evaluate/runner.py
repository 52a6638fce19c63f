"""The multi-model, multi-benchmark driver behind ``negationclip eval``.

Models are evaluated one at a time (each loaded once for all its benchmarks) and every image
embedding goes through one shared ``ImageEmbeddingCache``. ``results.json`` is rewritten
after each benchmark, so a killed run resumes: finished (model, benchmark) pairs are kept and
skipped unless ``overwrite`` is set. A benchmark that fails (e.g. too many missing images)
is recorded under ``errors`` and the others still run.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..utils import NegationClipError, load_json
from ..utils import checks
from ..utils.progress import progress
from .report import FORMAT, headline, new_results, software_versions, write_report


@dataclass
class EvalConfig:
    """Where each benchmark's data lives, and how to run. Paths left None disable nothing by
    themselves: asking for a benchmark whose inputs are missing is an error naming them."""

    out_dir: str = "eval-results"
    cache_dir: str | None = None  # None: the default shared cache; "none": in memory only
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64
    max_missing: float = 0.05
    limit: int | None = None  # first N items per benchmark (quick looks)
    overwrite: bool = False
    charts: bool = True
    # NegRefCOCOg
    negrefcocog: str | None = None
    negrefcocog_images: str | None = None
    # VALSE
    valse_dir: str | None = None
    valse_files: list[str] | None = None  # single piece files (e.g. a NegWorld valse_existence.json)
    valse_images: str | None = None
    valse_mturk_min_votes: int | None = None
    # zero-shot classification
    zeroshot_root: str | None = None
    zeroshot_list: str | None = None
    zeroshot_images: str | None = None
    zeroshot_classnames: str | None = None
    zeroshot_templates: str = "openai"
    # retrieval
    karpathy: str | None = None
    retrieval_split: str = "test"
    coco_captions: str | None = None
    coco_image_list: str | None = None
    retrieval_images: str | None = None
    captions_per_image: int | None = None
    # NegBench-style
    negbench_instances: str | None = None
    negbench_images: str | None = None
    negbench_max_images: int | None = None
    seed: int = 0
    # NegWorld negation pairs
    negation_pairs: str | None = None
    negation_pairs_root: str | None = None
    negation_pairs_split: str | None = None

    def __post_init__(self) -> None:  # the CLI's rules for the Python API too (utils.checks)
        self.batch_size = checks.positive_int(self.batch_size, "eval: batch_size")
        self.limit = checks.optional_positive_int(self.limit, "eval: limit")
        self.max_missing = checks.probability(self.max_missing, "eval: max_missing")


BENCHMARK_NAMES = ("negrefcocog", "valse", "valse-<piece>", "zeroshot", "coco-retrieval",
                   "negbench", "negation-pairs")
_ALIASES = {"imagenet": "zeroshot", "retrieval": "coco-retrieval", "negref": "negrefcocog",
            "pairs": "negation-pairs"}


def _need(cfg: EvalConfig, bench: str, *names: str) -> None:
    """The options are given and the paths they name exist (checked before any model loads)."""
    missing = [n for n in names if getattr(cfg, n) in (None, "")]
    if missing:
        opts = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise NegationClipError(f"benchmark {bench!r} needs {opts}")
    _exists(cfg, *names)


def _exists(cfg: EvalConfig, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if v not in (None, "") and not Path(v).exists():
            raise NegationClipError(f"--{n.replace('_', '-')} {v}: not found")


def valse_paths(cfg: EvalConfig) -> dict[str, Path]:
    """Piece name -> file, from --valse-dir (existence first) and --valse-file."""
    from .valse import piece_name, valse_pieces

    if not cfg.valse_dir and not cfg.valse_files:
        raise NegationClipError("VALSE benchmarks need --valse-dir or --valse-file")
    paths = list(valse_pieces(cfg.valse_dir)) if cfg.valse_dir else []
    for f in cfg.valse_files or []:
        if not Path(f).is_file():
            raise NegationClipError(f"{f}: VALSE piece file not found")
        paths.append(Path(f))
    return {piece_name(p): p for p in paths}


def expand_benchmarks(names: list[str], cfg: EvalConfig) -> list[str]:
    """Resolve aliases, expand ``valse`` into its pieces (existence first), check inputs."""
    out: list[str] = []
    for raw in names:
        name = _ALIASES.get(raw, raw)
        if name == "valse":
            _need(cfg, name, "valse_images")
            out += [f"valse-{piece}" for piece in valse_paths(cfg)]
            continue
        if name.startswith("valse-"):
            _need(cfg, name, "valse_images")
            if name[6:] not in valse_paths(cfg):
                raise NegationClipError(f"no VALSE piece {name[6:]!r} in --valse-dir/--valse-file "
                                        f"(have: {', '.join(valse_paths(cfg)) or 'none'})")
        elif name == "negrefcocog":
            _need(cfg, name, "negrefcocog", "negrefcocog_images")
        elif name == "zeroshot":
            if not (cfg.zeroshot_root or cfg.zeroshot_list):
                raise NegationClipError("benchmark 'zeroshot' needs --zeroshot-root or --zeroshot-list")
            _exists(cfg, "zeroshot_root", "zeroshot_list", "zeroshot_images")
        elif name == "coco-retrieval":
            if not (cfg.karpathy or cfg.coco_captions):
                raise NegationClipError("benchmark 'coco-retrieval' needs --karpathy or --coco-captions")
            _need(cfg, name, "retrieval_images")
            _exists(cfg, "karpathy", "coco_captions", "coco_image_list")
        elif name == "negbench":
            _need(cfg, name, "negbench_instances", "negbench_images")
        elif name == "negation-pairs":
            _need(cfg, name, "negation_pairs")
            _exists(cfg, "negation_pairs_root")
        else:
            raise NegationClipError(f"unknown benchmark {raw!r}; choose from {', '.join(BENCHMARK_NAMES)}")
        out.append(name)
    return list(dict.fromkeys(out))


def run_benchmark(name: str, bundle, cfg: EvalConfig, *, cache=None, model_name: str | None = None,
                  missing_out: str | os.PathLike | None = None) -> dict:
    """One benchmark on one loaded model, with the inputs named in ``cfg``."""
    common = dict(cache=cache, batch_size=cfg.batch_size, max_missing=cfg.max_missing,
                  missing_out=missing_out, model_name=model_name)
    if name == "negrefcocog":
        from .negrefcocog import evaluate_negrefcocog
        return evaluate_negrefcocog(bundle, cfg.negrefcocog, cfg.negrefcocog_images,
                                    limit=cfg.limit, **common)
    if name.startswith("valse-"):
        from .valse import evaluate_valse
        return evaluate_valse(bundle, valse_paths(cfg)[name[6:]], cfg.valse_images,
                              mturk_min_votes=cfg.valse_mturk_min_votes, limit=cfg.limit, **common)
    if name == "zeroshot":
        from .zeroshot import evaluate_zeroshot
        return evaluate_zeroshot(bundle, cfg.zeroshot_root, list_file=cfg.zeroshot_list,
                                 image_root=cfg.zeroshot_images, classnames=cfg.zeroshot_classnames,
                                 templates=cfg.zeroshot_templates, limit=cfg.limit, **common)
    if name == "coco-retrieval":
        from .retrieval import evaluate_retrieval
        return evaluate_retrieval(bundle, cfg.karpathy, image_root=cfg.retrieval_images,
                                  split=cfg.retrieval_split, captions=cfg.coco_captions,
                                  image_list=cfg.coco_image_list,
                                  captions_per_image=cfg.captions_per_image, **common)
    if name == "negbench":
        from .negbench import evaluate_negbench
        return evaluate_negbench(bundle, cfg.negbench_instances, cfg.negbench_images,
                                 max_images=cfg.negbench_max_images or cfg.limit, seed=cfg.seed,
                                 **common)
    if name == "negation-pairs":
        from .negation_pairs import evaluate_negation_pairs
        return evaluate_negation_pairs(bundle, cfg.negation_pairs, cfg.negation_pairs_root,
                                       split=cfg.negation_pairs_split, **common)
    raise NegationClipError(f"unknown benchmark {name!r}")


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


def run_eval(models: list[str], benchmarks: list[str], cfg: EvalConfig, *,
             loader: Callable | None = None, log: Callable[[str], None] = print) -> dict:
    """Evaluate every model on every benchmark; returns the results object (also written to
    ``cfg.out_dir`` with the Markdown table and charts). ``loader(source, device, dtype)``
    defaults to ``models.load_clip`` (tests pass a tiny-model factory)."""
    from ..models import ImageEmbeddingCache, load_clip
    from ..models.load import parse_dtype

    if not models:
        raise NegationClipError("eval: give at least one --model")
    if not benchmarks:
        raise NegationClipError("eval: give at least one --benchmark")
    names = expand_benchmarks(benchmarks, cfg)
    specs = [parse_model_spec(m) for m in models]
    labels = [s[0] for s in specs]
    if len(set(labels)) != len(labels):
        raise NegationClipError(f"eval: two models share a label ({labels}); use LABEL=SOURCE")
    out = Path(cfg.out_dir)
    config = {k: v for k, v in asdict(cfg).items() if v is not None}
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
    cache = ImageEmbeddingCache(False if cfg.cache_dir == "none" else cfg.cache_dir)
    load = loader or (lambda src, device, dtype: load_clip(src, device=device, dtype=dtype))
    for label, source in specs:
        todo = [b for b in names if b not in results["results"].get(label, {})]
        if not todo:
            log(f"{label}: all benchmarks already in {out / 'results.json'} (resume)")
            continue
        try:
            bundle = load(source, cfg.device, parse_dtype(cfg.dtype))
        except NegationClipError as e:
            for b in todo:
                results["errors"].setdefault(label, {})[b] = f"model failed to load: {e}"
            log(f"{label}: error: {e}")
            write_report(results, out, charts=False)
            continue
        results["models"][label] = dict(getattr(bundle, "provenance", {}) or {}) | {"source": source}
        for b in progress(todo, desc=label, unit="benchmark"):
            t0 = time.perf_counter()
            try:
                res = run_benchmark(b, bundle, cfg, cache=cache, model_name=label,
                                    missing_out=out / "missing" / f"{b}.txt")
            except NegationClipError as e:
                results["errors"].setdefault(label, {})[b] = str(e)
                log(f"{label} / {b}: error: {e}")
            else:
                results["results"].setdefault(label, {})[b] = res
                results["errors"].get(label, {}).pop(b, None)
                key, val = headline(res)
                shown = "n/a" if val is None else f"{100 * val:.2f}%"
                log(f"{label} / {b}: {key} {shown} ({time.perf_counter() - t0:.1f}s)")
            write_report(results, out, charts=False)
        del bundle
        gc.collect()
    results["errors"] = {m: e for m, e in results["errors"].items() if e}
    write_report(results, out, charts=cfg.charts)
    return results
