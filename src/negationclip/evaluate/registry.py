"""Benchmarks as plug-ins: each benchmark is one module in ``evaluate/benchmarks/`` that
defines ``BENCHMARK = Benchmark(...)``: its name, its inputs (which become its ``eval`` options
and its part of ``EvalConfig.inputs``), how its inputs split into result keys, and a run
function returning the common result dict. ``registry()`` finds them by scanning the package,
so adding a benchmark is one new file (and its test); nothing else names it.

Plug-in modules stay light at import (the CLI builds its parser from them): anything
torch-heavy is imported inside ``units`` / ``run``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..utils import NegationClipError

INPUT_TYPES = ("path", "dir", "str", "int", "float")


@dataclass(frozen=True)
class Input:
    """One input of a benchmark: config key ``name``, CLI option ``--name-with-dashes``.

    ``type``: ``path`` (a file), ``dir`` (a folder; both checked to exist before any model
    loads, unless ``must_exist`` is False), ``str``, ``int``, ``float``. ``multiple``: the
    option repeats and the value is a list. Two benchmarks may share an input (e.g.
    ``negbench_images``) by declaring it identically.
    """

    name: str
    help: str
    type: str = "path"
    multiple: bool = False
    default: Any = None
    choices: tuple[str, ...] | None = None
    must_exist: bool = True
    metavar: str | None = None
    flag: str | None = None  # the CLI option when not derived from ``name``

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass
class RunContext:
    """What the runner gives every benchmark run besides its inputs."""

    cache: Any = None
    batch_size: int = 64
    max_missing: float = 0.05
    limit: int | None = None
    missing_out: str | os.PathLike | None = None
    model_name: str | None = None
    tie_tol: float = 1e-6

    def common(self) -> dict:
        """The keyword arguments every ``evaluate_*`` function takes."""
        return dict(cache=self.cache, batch_size=self.batch_size, max_missing=self.max_missing,
                    missing_out=self.missing_out, model_name=self.model_name)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark plug-in.

    ``units(inputs) -> {result key: payload}``: reads and checks the inputs once, before any
    model loads (a bad file is a NegationClipError naming it); the default is one unit keyed
    by ``name`` with payload None. Multi-file benchmarks key units ``<name>:<file stem>``.
    ``run(bundle, payload, inputs, ctx) -> dict``: the result (``accuracy_official`` /
    ``accuracy`` etc. as fractions, ``headline_metric`` if not ``accuracy_official``).
    ``requires``: input names that must be given; a tuple inside means "one of these".
    ``task``: CLIP_benchmark's task name for the per-(model, benchmark) JSON; ``dumps``
    optionally splits one result into several CLIP_benchmark datasets.
    """

    name: str
    title: str
    summary: str
    inputs: tuple[Input, ...]
    run: Callable[..., dict]
    units: Callable[[dict], dict[str, Any]] | None = None
    requires: tuple[str | tuple[str, ...], ...] = ()
    task: str = "image_caption_selection"
    official: str = ""
    aliases: tuple[str, ...] = ()
    rank: int = 100  # position in --list and --help
    dumps: Callable[[str, dict], list[tuple[str, dict]]] | None = None

    def check(self, inputs: dict) -> None:
        """Required inputs given, given paths present (before any model loads)."""
        for req in self.requires:
            names = req if isinstance(req, tuple) else (req,)
            if all(inputs.get(n) in (None, "", []) for n in names):
                opts = " or ".join(i.option for i in self.inputs if i.name in names) or names
                raise NegationClipError(f"benchmark {self.name!r} needs {opts}")
        for inp in self.inputs:
            if inp.type not in ("path", "dir") or not inp.must_exist:
                continue
            vals = inputs.get(inp.name)
            for v in (vals if isinstance(vals, list) else [vals]):
                if v in (None, ""):
                    continue
                p = Path(v)
                if not p.exists():
                    raise NegationClipError(f"{inp.option} {v}: not found")
                if inp.type == "dir" and not p.is_dir():
                    raise NegationClipError(f"{inp.option} {v}: not a folder")
                if inp.type == "path" and p.is_dir():
                    raise NegationClipError(f"{inp.option} {v}: is a folder, expected a file")

    def plan(self, inputs: dict) -> dict[str, Any]:
        self.check(inputs)
        return self.units(inputs) if self.units is not None else {self.name: None}


_REGISTRY: dict[str, Benchmark] | None = None


def registry() -> dict[str, Benchmark]:
    """Every benchmark plug-in by name, in ``rank`` order (imported once)."""
    global _REGISTRY
    if _REGISTRY is None:
        from . import benchmarks as pkg

        found: list[Benchmark] = []
        for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)):
            if mod.startswith("_"):
                continue
            b = getattr(importlib.import_module(f"{pkg.__name__}.{mod}"), "BENCHMARK", None)
            if not isinstance(b, Benchmark):
                raise RuntimeError(f"evaluate/benchmarks/{mod}.py defines no BENCHMARK")
            found.append(b)
        found.sort(key=lambda b: (b.rank, b.name))
        reg = {b.name: b for b in found}
        if len(reg) != len(found):
            raise RuntimeError("two benchmark plug-ins share a name")
        _check_inputs(reg)  # conflicting shared inputs fail here, at import
        _REGISTRY = reg
    return _REGISTRY


def all_inputs(reg: dict[str, Benchmark] | None = None) -> dict[str, tuple[Input, list[str]]]:
    """Input name -> (declaration, names of the benchmarks using it)."""
    if reg is None:
        if _REGISTRY is None:
            return {}
        reg = _REGISTRY
    out: dict[str, tuple[Input, list[str]]] = {}
    for b in reg.values():
        for inp in b.inputs:
            if inp.name in out:
                out[inp.name][1].append(b.name)
            else:
                out[inp.name] = (inp, [b.name])
    return out


def _check_inputs(reg: dict[str, Benchmark]) -> None:
    seen: dict[str, tuple[Input, str]] = {}
    for b in reg.values():
        for inp in b.inputs:
            if inp.type not in INPUT_TYPES:
                raise RuntimeError(f"benchmark {b.name}: input {inp.name} has unknown type {inp.type!r}")
            prev = seen.get(inp.name)
            if prev is not None and prev[0] != inp:
                raise RuntimeError(f"benchmarks {prev[1]} and {b.name} declare input "
                                   f"{inp.name!r} differently")
            seen.setdefault(inp.name, (inp, b.name))


def default_inputs() -> dict[str, Any]:
    """Every input at its default (what an empty command line gives)."""
    return {name: ([] if inp.multiple and inp.default is None else inp.default)
            for name, (inp, _) in all_inputs(registry()).items()}


def resolve_name(raw: str) -> tuple[Benchmark, str | None]:
    """``name``, ``name:part`` or an alias -> (benchmark, part or None)."""
    reg = registry()
    name, _, part = raw.partition(":")
    for b in reg.values():
        if name == b.name or name in b.aliases:
            return b, part or None
    # legacy "valse-<piece>" spelling
    if name.startswith("valse-") and "valse" in reg:
        return reg["valse"], name[len("valse-"):]
    if name == "negbench":
        raise NegationClipError(
            "benchmark 'negbench' was negationclip's own NegBench-style test, now called "
            "'coco-negation'; NegBench itself is 'negbench-mcq' and 'negbench-retrieval' on its "
            "released CSVs")
    raise NegationClipError(f"unknown benchmark {raw!r}; choose from {', '.join(reg)} "
                            f"(negationclip eval --list)")


def file_stem_key(name: str, path: str | os.PathLike) -> str:
    """``<benchmark>:<file stem>``: the result key of one file of a multi-file benchmark."""
    return f"{name}:{Path(path).stem}"
