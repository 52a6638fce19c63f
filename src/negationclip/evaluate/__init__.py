"""Benchmarks: NegRefCOCOg (build and evaluate), VALSE, NegBench (MCQ, retrieval), CC-Neg,
SugarCREPE, zero-shot classification, COCO retrieval, negationclip's COCO negation tests,
NegWorld negation pairs; benchmark plug-ins (``registry``, ``benchmarks/``), one runner and
report.

Submodules are imported lazily by the runner so that building a benchmark file never pulls
in torch-heavy code it does not need.
"""

_EXPORTS = {
    "evaluate_negrefcocog": "negrefcocog", "evaluate_valse": "valse", "valse_pieces": "valse",
    "evaluate_zeroshot": "zeroshot", "evaluate_retrieval": "retrieval",
    "evaluate_coco_negation": "coco_negation", "build_coco_negation": "coco_negation",
    "evaluate_negbench_mcq": "negbench", "evaluate_negbench_retrieval": "negbench",
    "evaluate_ccneg": "ccneg", "evaluate_sugarcrepe": "sugarcrepe",
    "Benchmark": "registry", "Input": "registry", "RunContext": "registry", "registry": "registry",
    "evaluate_negation_pairs": "negation_pairs", "build_negrefcocog": "refcocog_build",
    "write_negrefcocog": "refcocog_build", "BuildConfig": "refcocog_build",
    "safe_load_pickle": "refcocog_build", "run_eval": "runner", "run_benchmark": "runner",
    "plan_benchmarks": "runner", "list_benchmarks": "runner",
    "EvalConfig": "runner", "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
