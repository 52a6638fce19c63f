"""Benchmark plug-ins, one module each, found by ``evaluate.registry.registry()``.

To add a benchmark: a new module here defining ``BENCHMARK = Benchmark(...)`` (see
``registry.py``) and its test; the CLI options, ``eval --list``, the runner, results.json and
the CLIP_benchmark-layout JSON follow from the declaration.
"""
