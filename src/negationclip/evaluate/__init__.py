"""Benchmarks: NegRefCOCOg (build and evaluate), VALSE, zero-shot classification, COCO
retrieval, NegBench-style negation tests, NegWorld negation pairs; one runner and report.

Submodules are imported lazily by the runner so that building a benchmark file never pulls
in torch-heavy code it does not need.
"""

_EXPORTS = {
    "evaluate_negrefcocog": "negrefcocog", "evaluate_valse": "valse", "valse_pieces": "valse",
    "evaluate_zeroshot": "zeroshot", "evaluate_retrieval": "retrieval",
    "evaluate_negbench": "negbench", "build_negbench": "negbench",
    "evaluate_negation_pairs": "negation_pairs", "build_negrefcocog": "refcocog_build",
    "write_negrefcocog": "refcocog_build", "BuildConfig": "refcocog_build",
    "safe_load_pickle": "refcocog_build", "run_eval": "runner", "run_benchmark": "runner",
    "EvalConfig": "runner", "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
