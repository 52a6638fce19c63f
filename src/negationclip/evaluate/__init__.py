"""Benchmarks: NegRefCOCOg (build and evaluate), VALSE, zero-shot classification, COCO
retrieval, NegBench-style negation tests, NegWorld negation pairs; one runner and report.

Submodules are imported lazily by the runner so that building a benchmark file never pulls
in torch-heavy code it does not need.
"""
