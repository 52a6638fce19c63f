"""The measurement protocol every script in ``benchmarks/`` follows, so figures reproduce.

One run of a script:

1. records the 1/5/15-minute load averages, sets the torch thread count, and measures the
   machine's matmul peak *at that thread count* (best of several float32 GEMMs of
   ``PEAK_N`` x ``PEAK_N``, 2*N^3 FLOPs each);
2. runs every arm once untimed (warm-up: allocator, kernels, file cache), then ``runs`` times
   **interleaved** (A B A B ...), so slow drift of the machine (other jobs, thermals) hits
   every arm alike; wall seconds and CPU seconds (this process and its children) per call;
3. measures the peak again and the load averages again; reports per arm the median, min and max
   of each quantity, the ratio of medians (and the range of the per-run paired ratios), and,
   where the arm's floating-point work is known, its achieved fraction of the peak;
4. flags the run ``busy`` when any 1-minute load average sampled (before, between arms, after)
   exceeds ``max(threads, 2) + 0.5`` (this process accounts for up to ``threads``; the 2 covers
   the decaying load of the previous 2-thread script in ``make bench``), i.e. when other work
   was competing for the cores; such figures are not the machine's;
5. prints a table and writes JSON (all of the above, plus the script's own config, checks and
   targets) to ``benchmarks/results/<name>.json``; ``benchmarks/summary.py`` collects them.

FLOP counting (:class:`FlopCounter`): forward hooks record the shape of every forward the CLIP
towers really run (vision: images per call; text: batch x padded token length per call), and
:func:`vision_flops` / :func:`text_flops` turn shapes into FLOPs from the model config:
a multiply-add is 2 FLOPs; per transformer layer and token, QKV + output projections
``8 D^2``, MLP ``4 D I``, attention scores and weighted sum ``4 T D`` (T = sequence length);
plus the patch embedding (``2 * 3 P^2 * D`` per patch) and the output projection
(``2 D E`` per sample). Layer norms, softmax, activations and embeddings are left out (under
1%). ViT-B/32 image: 8.82 GFLOP; ViT-B/32-sized text at 77 tokens: 5.97 GFLOP, at 12: 0.89.
Text is counted at the length each forward actually runs (its padded length), so an arm that
pads to 77 is credited with the padding it computes: the fraction of peak says how well the
hardware is used, the ratio says how much work was avoided. ``tests/benchmarks`` checks the
formulas against ``torch.utils.flop_counter`` on a tiny model.

Options: every numeric option uses the package's argparse types (``utils.argtypes``: ``--runs
0`` or ``--threads -1`` stop with ``error: argument --runs: ...``, exit 2), :func:`parse_args`
refuses an ``--out`` (any option named ``*out``) that cannot be written before any work, and
:func:`cli` turns a ``NegationClipError`` or ``OSError`` met while running into ``error: ...``,
exit 2, never a traceback.

Devices: ``Bench(device="cuda")`` measures the peak with CUDA GEMMs (``PEAK_N_CUDA``, in the
arms' dtype) and synchronizes the device after every arm call, so a call's wall time includes
its queued kernels.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from negationclip.utils.argtypes import device, nonneg_float, nonneg_int, positive_float, positive_int  # noqa: F401
from negationclip.utils.errors import NegationClipError
from negationclip.utils.paths import check_output

RESULTS = Path(__file__).resolve().parent / "results"
PEAK_N = 1536
PEAK_N_CUDA = 8192
BUSY_MARGIN = 0.5
# The 1-minute load average decays over minutes: a 1-thread script started right after a
# 2-thread one (make bench) still sees about 2 of that one's load, which is not other work.
BENCH_THREADS = 2


# ----------------------------------------------------------------------------- FLOPs


def _layer_flops(d: int, inter: int, t: int) -> int:
    """One pre-LN transformer layer on t tokens of width d (MLP width inter)."""
    return t * (8 * d * d + 4 * d * inter + 4 * t * d)


def vision_flops(config, images: int = 1) -> int:
    """FLOPs of ``images`` forwards of the vision tower plus visual projection."""
    v = config.vision_config
    patches = (v.image_size // v.patch_size) ** 2
    per = (2 * 3 * v.patch_size ** 2 * v.hidden_size * patches
           + v.num_hidden_layers * _layer_flops(v.hidden_size, v.intermediate_size, patches + 1)
           + 2 * v.hidden_size * config.projection_dim)
    return images * per


def text_flops(config, batch: int, tokens: int) -> int:
    """FLOPs of one text-tower forward on ``batch`` sequences padded to ``tokens``."""
    t = config.text_config
    # CLIP projects to projection_dim; SigLIP's text head maps to projection_size (its width)
    proj = getattr(config, "projection_dim", None) or getattr(t, "projection_size", t.hidden_size)
    per = (t.num_hidden_layers * _layer_flops(t.hidden_size, t.intermediate_size, tokens)
           + 2 * t.hidden_size * proj)
    return batch * per


class FlopCounter:
    """Counts the FLOPs of the forwards a CLIPModel's towers really run (hooks on shapes).

    ``backward_text=True`` adds twice the text forward for its backward pass (gradients of
    activations and weights), as in a training step where only the text tower learns.
    ``auto_backward=True`` decides per forward, for either tower: a forward run with gradients
    enabled on a tower that has trainable parameters is charged twice again for its backward
    (an upper bound where only some of the tower's layers train); a no-grad forward (cached
    embeddings, evaluation) is charged once.
    """

    def __init__(self, model, backward_text: bool = False, auto_backward: bool = False):
        self.config, self.flops, self.calls = model.config, 0, {"vision": 0, "text": 0}
        self._text_mult = 3 if backward_text else 1
        self._auto = auto_backward
        self._towers = {"vision": model.vision_model, "text": model.text_model}
        self._hooks = [model.vision_model.register_forward_pre_hook(self._vision, with_kwargs=True),
                       model.text_model.register_forward_pre_hook(self._text, with_kwargs=True)]

    def _mult(self, tower: str, default: int) -> int:
        if not self._auto:
            return default
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self._towers[tower].parameters())
        return 3 if trains else 1

    def _vision(self, _mod, args, kwargs):
        px = kwargs.get("pixel_values", args[0] if args else None)
        self.flops += self._mult("vision", 1) * vision_flops(self.config, int(px.shape[0]))
        self.calls["vision"] += 1

    def _text(self, _mod, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.flops += self._mult("text", self._text_mult) * text_flops(self.config, int(ids.shape[0]),
                                                                       int(ids.shape[1]))
        self.calls["text"] += 1

    def reset(self) -> None:
        self.flops, self.calls = 0, {"vision": 0, "text": 0}

    def counted(self, fn: Callable[[], Any]) -> Callable[[], dict]:
        """``fn`` as an arm's run that also returns the FLOPs it ran (``{"flops": ...}``)."""
        def run() -> dict:
            self.reset()
            out = fn()
            return {**(out if isinstance(out, dict) else {}), "flops": self.flops}
        return run

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


# ----------------------------------------------------------------------------- machine


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": _cpu_name(),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def synchronize(device: str | torch.device = "cpu") -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(n: int = PEAK_N, reps: int = 6, device: str = "cpu",
                dtype: torch.dtype = torch.float32) -> dict:
    """Best GEMM rate (GFLOP/s) of ``n x n`` matrices: on CPU at the current torch thread count,
    on CUDA in ``dtype`` (float32 GEMMs there follow torch's TF32 setting, reported)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up
    synchronize(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    out = {"gflops": 2 * n ** 3 / best / 1e9, "n": n, "reps": reps, "dtype": str(dtype).replace("torch.", ""),
           "threads": torch.get_num_threads(), "device": str(device)}
    if torch.device(device).type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        out["tf32"] = torch.backends.cuda.matmul.allow_tf32
    return out


# ----------------------------------------------------------------------------- protocol


@dataclass
class Arm:
    """One way of doing the work. ``run`` does it once and may return a dict of extra
    per-run numbers (e.g. ``ms_per_step`` from a child process); ``flops`` is the FLOPs of
    one call (a number, or a callable asked after the runs, e.g. a FlopCounter's total / runs)."""

    name: str
    run: Callable[[], dict | None]
    label: str = ""
    flops: float | Callable[[], float | None] | None = None
    seconds_key: str = "seconds"  # the per-run quantity the fraction of peak divides by


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


@dataclass
class Bench:
    """A benchmark run: ``b = Bench(name, threads=2, runs=3)``; ``b.measure(arms)``;
    ``b.conclude()``; then ``b.ratio``, ``b.target``, ``b.set_headline``; ``b.write(out)``."""

    name: str
    threads: int = 2
    runs: int = 3
    warmup: int = 1
    note: str = ""
    arms: dict[str, dict] = field(default_factory=dict)
    ratios: list[dict] = field(default_factory=list)
    targets: list[dict] = field(default_factory=list)
    headline: dict | None = None
    quick: bool = False  # smoke test: a small GEMM for the peak, no warm-up (figures meaningless)
    device: str = "cpu"
    dtype: torch.dtype = torch.float32  # of the peak's GEMMs (the arms' compute dtype)

    def __post_init__(self):
        os.environ.setdefault("NEGATIONCLIP_NO_PROGRESS", "1")
        torch.set_num_threads(self.threads)
        if self.quick:
            self.warmup = 0
        self.load_samples = [load_average()]
        self.load_before = self.load_samples[0]
        self.peak_before = self._peak()
        print(f"[{self.name}] {self.threads} threads, matmul peak {self.peak_before['gflops']:.0f} GFLOP/s, "
              f"load average {self.load_before}", flush=True)

    # -- running

    def measure(self, arms: list[Arm]) -> dict[str, dict]:
        raw = {a.name: {"seconds": [], "cpu_seconds": []} for a in arms}
        extra: dict[str, dict[str, list]] = {a.name: {} for a in arms}
        for i in range(self.warmup + self.runs):
            timed = i >= self.warmup
            for a in arms:
                c0, t0 = cpu_seconds(), time.perf_counter()
                out = a.run() or {}
                synchronize(self.device)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
                self.load_samples.append(load_average())
                if not timed:
                    continue
                raw[a.name]["seconds"].append(wall)
                raw[a.name]["cpu_seconds"].append(cpu)
                for k, v in out.items():
                    extra[a.name].setdefault(k, []).append(v)
            tag = "warm-up" if not timed else f"run {i - self.warmup + 1}/{self.runs}"
            print(f"[{self.name}] {tag}: " + ", ".join(
                f"{a.name} {raw[a.name]['seconds'][-1]:.2f} s" if timed else a.name for a in arms),
                flush=True)
        for a in arms:
            rec: dict[str, Any] = {"label": a.label}
            for k, vals in {**raw[a.name], **extra[a.name]}.items():
                if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    rec[k] = stats(list(vals))
                else:
                    rec[k] = vals[-1] if vals else None  # non-numeric: keep the last
            fl = a.flops() if callable(a.flops) else a.flops
            if fl is None and isinstance(rec.get("flops"), dict):  # counted per run by the arm
                fl = rec["flops"]["median"]
            rec["flops"] = fl
            rec["seconds_key"] = a.seconds_key
            self.arms[a.name] = rec
        return self.arms

    # -- derived numbers

    def ratio(self, name: str, numerator: str, denominator: str, key: str = "seconds",
              higher_is_better: bool = False) -> dict:
        """Ratio of medians ``numerator / denominator`` of ``key`` (e.g. reference seconds /
        ours seconds = speed-up), with the min and max of the per-run paired ratios."""
        a, b = self.arms[numerator][key], self.arms[denominator][key]
        paired = [x / y for x, y in zip(a["runs"], b["runs"]) if y]
        r = {"name": name, "numerator": numerator, "denominator": denominator, "key": key,
             "median_ratio": a["median"] / b["median"], "paired_min": min(paired),
             "paired_max": max(paired), "higher_is_better": higher_is_better}
        fa, fb = self.arms[numerator].get("flops"), self.arms[denominator].get("flops")
        if fa and fb:  # the ratio a compute-bound machine allows at equal efficiency
            r["flops_ratio"] = fa / fb
        self.ratios.append(r)
        return r

    def target(self, what: str, value: float | None, op: str, goal: float, *,
               spread: tuple[float, float] | None = None, note: str = "") -> dict:
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        t = {"what": what, "value": value, "op": op, "goal": goal, "met": met,
             "spread": list(spread) if spread else None, "note": note}
        self.targets.append(t)
        return t

    def set_headline(self, what: str, value: float, lo: float, hi: float, unit: str = "") -> None:
        self.headline = {"what": what, "value": value, "min": lo, "max": hi, "unit": unit}

    def _peak(self) -> dict:
        cuda = torch.device(self.device).type == "cuda"
        n = 512 if self.quick else (PEAK_N_CUDA if cuda else PEAK_N)
        return matmul_peak(n, 3 if self.quick else (10 if cuda else 6), self.device, self.dtype)

    @property
    def peak_gflops(self) -> float:
        return max(self.peak_before["gflops"], self.peak_after["gflops"])

    def conclude(self) -> "Bench":
        """After ``measure``: the peak and load averages again, achieved GFLOP/s and fraction
        of peak per arm (targets and ratios may use them from here on)."""
        self.peak_after = self._peak()
        self.load_after = load_average()
        self.load_samples.append(self.load_after)
        peak = self.peak_gflops
        for rec in self.arms.values():
            sec = rec.get(rec["seconds_key"])
            if rec["flops"] and isinstance(sec, dict):
                med = sec["median"] * (1e-3 if rec["seconds_key"].startswith("ms") else 1)
                rec["gflops_per_s"] = rec["flops"] / med / 1e9
                rec["fraction_of_peak"] = rec["gflops_per_s"] / peak
            else:
                rec["gflops_per_s"] = rec["fraction_of_peak"] = None
        ones = [s[0] for s in self.load_samples if s]
        threshold = max(self.threads, BENCH_THREADS) + BUSY_MARGIN
        self.load = {"before": self.load_before, "after": self.load_after,
                     "max_1min": max(ones) if ones else None, "samples_1min": ones,
                     "busy_threshold": threshold, "busy": bool(ones) and max(ones) > threshold}
        return self

    def write(self, out: str | os.PathLike | None = None, *, columns: list[str] | None = None,
              config: dict | None = None, extra: dict | None = None) -> dict:
        """Print the table, ratios, targets and load; write the JSON (atomically)."""
        result = {"benchmark": self.name, "note": self.note, "quick": self.quick,
                  "protocol": {"runs": self.runs, "warmup": self.warmup, "order": "interleaved (A B A B ...)",
                               "threads": self.threads, "device": str(self.device),
                               "statistic": "median; spread = min..max of runs"},
                  "peak": {"gflops": self.peak_gflops, "before": self.peak_before, "after": self.peak_after},
                  "load": self.load, "arms": self.arms, "ratios": self.ratios, "targets": self.targets,
                  "headline": self.headline, "config": config or {}, **(extra or {}),
                  "machine": machine()}
        self._print(result, columns or [])
        path = Path(out) if out else RESULTS / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, path)
        print(f"wrote {path}")
        return result

    def _print(self, result: dict, columns: list[str]) -> None:
        rows = []
        for name, rec in self.arms.items():
            row = {"arm": name, "what": rec["label"]}
            for k in [rec["seconds_key"], *columns]:
                v = rec.get(k)
                if isinstance(v, dict):
                    row[k] = f"{fmt(v['median'])} [{fmt(v['min'])}-{fmt(v['max'])}]"
                elif v is not None:
                    row[k] = fmt(v)
            if rec["fraction_of_peak"] is not None:
                row["GFLOP/s"] = fmt(rec["gflops_per_s"])
                row["of peak"] = f"{100 * rec['fraction_of_peak']:.0f}%"
            rows.append(row)
        cols = list(dict.fromkeys(k for r in rows for k in r))
        print(f"\n{self.name}: median [min-max] of {self.runs} interleaved runs, {self.threads} threads")
        print_table(rows, cols)
        for r in self.ratios:
            print(f"{r['name']}: {r['median_ratio']:.2f}x (ratio of medians; per-run pairs "
                  f"{r['paired_min']:.2f}-{r['paired_max']:.2f}x)"
                  + (f"; FLOP ratio {r['flops_ratio']:.2f}x" if "flops_ratio" in r else ""))
        for t in self.targets:
            v = "n/a" if t["value"] is None else fmt(t["value"])
            state = "skipped" if t["met"] is None else ("met" if t["met"] else "NOT met")
            print(f"target {t['what']} {t['op']} {fmt(t['goal'])}: {v} -> {state}"
                  + (f" ({t['note']})" if t["note"] else ""))
        ld = result["load"]
        where = (f"{self.threads} threads" if torch.device(self.device).type == "cpu"
                 else result["peak"]["before"].get("gpu", str(self.device)))
        print(f"matmul peak {result['peak']['gflops']:.0f} GFLOP/s ({result['peak']['before']['dtype']}, {where}); "
              f"load average before {ld['before']}, after {ld['after']}"
              + (f"; BUSY: 1-min load reached {ld['max_1min']:.2f} > {ld['busy_threshold']} "
                 "(other work on the machine; not a quiet-machine figure)" if ld["busy"] else "; quiet"))


# ----------------------------------------------------------------------------- printing


def fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float):
        if v == 0 or 0.001 <= abs(v) < 1000:
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.2e}"
    return str(v)


def print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [[c for c in columns]] + [[r.get(c, "") if isinstance(r.get(c), str) else fmt(r.get(c))
                                        for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        print("  ".join(s.ljust(w) for s, w in zip(row, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def quick_flag(ap) -> None:
    """``--quick``: tiny sizes, one run, no warm-up, for the smoke test (figures meaningless)."""
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run, no warm-up (smoke test only)")


def add_protocol_args(ap, threads: int = 2, runs: int = 3) -> None:
    ap.add_argument("--threads", type=positive_int, default=threads,
                    help=f"torch CPU threads (peak measured at this count; default {threads})")
    ap.add_argument("--runs", type=positive_int, default=runs,
                    help=f"timed runs per arm, interleaved, after one warm-up (default {runs})")
    quick_flag(ap)


def parse_args(ap, argv=None):
    """``ap.parse_args`` plus the output guard: every option whose name ends in ``out`` (``--out``,
    ``--replicas-out``) must be a file that can be written (``utils.paths.check_output``), else
    ``error: ...`` and exit 2 before any work."""
    args = ap.parse_args(argv)
    for dest, value in vars(args).items():
        if dest.endswith("out") and value:
            try:
                check_output(value, kind="file", option="--" + dest.replace("_", "-"))
            except NegationClipError as e:
                ap.error(str(e))
    return args


def cli(main: Callable[..., int], argv=None) -> int:
    """Run a script's ``main``: a ``NegationClipError`` or ``OSError`` becomes one line
    ``error: ...`` on stderr and exit status 2 (bad input, never a traceback)."""
    try:
        return main(argv)
    except NegationClipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module from a benchmark script")
