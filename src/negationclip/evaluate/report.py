"""results.json, a Markdown table and PNG bar charts for a multi-model evaluation.

``results.json`` layout::

    {"format": "negationclip-eval/1", "created": ..., "software": {...},
     "models": {label: provenance}, "results": {label: {benchmark: {...metrics...}}},
     "errors": {label: {benchmark: message}}, "config": {...}}

Each benchmark's headline metric is ``result["headline_metric"]`` if present, else
``accuracy_official`` (the benchmark's own rule), else ``accuracy`` (fractions in [0, 1]; the
table and charts show percentages). Detail tables put ``accuracy_official`` first, then
``accuracy_strict`` and ``ties``.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..utils import atomic_write_bytes, atomic_write_json, atomic_write_text

FORMAT = "negationclip-eval/1"

# Metrics shown next to the headline in the per-benchmark tables, when present.
_DETAIL_KEYS = ("accuracy_official", "accuracy_strict", "ties", "all_items.accuracy_official",
                "all_items.total", "total_accuracy", "positive_accuracy", "negative_accuracy",
                "hybrid_accuracy", "image_retrieval_recall@1", "image_retrieval_recall@5",
                "text_retrieval_recall@1", "text_retrieval_recall@5",
                "add_att_acc", "add_obj_acc", "replace_att_acc", "replace_obj_acc",
                "replace_rel_acc", "swap_att_acc", "swap_obj_acc", "accuracy", "top1", "top5",
                "heldout_accuracy", "trained_phrasing_accuracy",
                "mcq_affirmation_accuracy", "mcq_negation_accuracy", "mcq_hybrid_accuracy",
                "retrieval_neg_r1", "retrieval_neg_r5", "retrieval_neg_top1_contains_negated",
                "retrieval_aff_r1", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10",
                "total", "missing_images", "items_per_second")
_COUNTS = {"ties", "total", "missing_images", "correct", "all_items.total"}


def software_versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("negationclip", "torch", "transformers", "numpy", "PIL", "safetensors"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:  # a missing optional package is just not listed
            continue
    try:
        import torch
        out["cuda"] = torch.version.cuda
        out["device_name"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:
        pass
    return out


def new_results(config: dict | None = None) -> dict:
    return {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "software": software_versions(), "models": {}, "results": {}, "errors": {},
            "config": config or {}}


def headline(result: dict) -> tuple[str, float | None]:
    key = result.get("headline_metric") or ("accuracy_official" if "accuracy_official" in result
                                            else "accuracy")
    val = result.get(key)
    return key, (float(val) if isinstance(val, (int, float)) else None)


def _get(result: dict, key: str):
    """``key`` or a dotted path into nested dicts (``all_items.total``)."""
    val = result
    for part in key.split("."):
        if not isinstance(val, dict) or part not in val:
            return None
        val = val[part]
    return val


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def _cell(key: str, v) -> str:
    if v is None:
        return "—"
    if key in _COUNTS:
        return str(int(v))
    if key == "items_per_second":
        return f"{v:.1f}"
    return _pct(v)


def _benchmarks(results: dict) -> list[str]:
    seen: dict[str, None] = {}
    for per_model in results.get("results", {}).values():
        for b in per_model:
            seen.setdefault(b, None)
    for per_model in results.get("errors", {}).values():
        for b in per_model:
            seen.setdefault(b, None)
    return list(seen)


def markdown(results: dict) -> str:
    """A summary table (models x benchmarks, headline metric in %) and one detail table per
    benchmark."""
    models = list(results.get("results", {}))
    for m in results.get("errors", {}):
        if m not in models:
            models.append(m)
    benches = _benchmarks(results)
    lines = ["# negationclip evaluation", "",
             f"Created {results.get('created', '')}; software: "
             + ", ".join(f"{k} {v}" for k, v in results.get("software", {}).items()
                         if k in ("negationclip", "torch", "transformers")), ""]
    if not benches:
        return "\n".join(lines + ["No results."]) + "\n"
    heads = []
    for b in benches:
        key = next((headline(results["results"][m][b])[0] for m in models
                    if b in results.get("results", {}).get(m, {})), "accuracy")
        heads.append(f"{b} ({key}, %)")
    lines += ["| model | " + " | ".join(heads) + " |", "|---" * (len(benches) + 1) + "|"]
    for m in models:
        row = []
        for b in benches:
            r = results.get("results", {}).get(m, {}).get(b)
            if r is not None:
                row.append(_pct(headline(r)[1]))
            elif b in results.get("errors", {}).get(m, {}):
                row.append("error")
            else:
                row.append("—")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    for b in benches:
        keys = [k for k in _DETAIL_KEYS
                if any(_get(results["results"].get(m, {}).get(b, {}), k) is not None for m in models)]
        if "accuracy_official" in keys and "accuracy" in keys:
            keys.remove("accuracy")  # the same figure
        lines += ["", f"## {b}", "", "| model | " + " | ".join(
            k + ("" if k in _COUNTS or k == "items_per_second" else " (%)") for k in keys) + " |",
                  "|---" * (len(keys) + 1) + "|"]
        for m in models:
            r = results["results"].get(m, {}).get(b)
            if r is None:
                err = results.get("errors", {}).get(m, {}).get(b)
                lines.append(f"| {m} | " + (f"error: {err}" if err else "—") + " |")
                continue
            lines.append(f"| {m} | " + " | ".join(_cell(k, _get(r, k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def bar_charts(results: dict, out_dir: str | os.PathLike) -> list[Path]:
    """One PNG per benchmark (headline metric per model) and ``summary.png`` (all of them)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import io

    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    models = list(results.get("results", {}))
    benches = _benchmarks(results)
    written: list[Path] = []

    def save(fig, path: Path) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)

    table: dict[str, list[float | None]] = {}
    for b in benches:
        vals, key = [], "accuracy"
        for m in models:
            r = results["results"].get(m, {}).get(b)
            if r is not None:
                key, v = headline(r)
                vals.append(None if v is None else 100 * v)
            else:
                vals.append(None)
        table[b] = vals
        if all(v is None for v in vals):
            continue
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(models) + 2), 3.5))
        xs = range(len(models))
        bars = ax.bar(xs, [v or 0 for v in vals], color=[f"C{i}" for i in xs])
        for bar, v in zip(bars, vals):
            ax.annotate("n/a" if v is None else f"{v:.1f}", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), [m if len(m) < 28 else "…" + m[-26:] for m in models],
                      rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"{key} (%)")
        ax.set_ylim(0, 105)
        ax.set_title(b)
        save(fig, out_dir / f"{_safe(b)}.png")
    if table and models:
        fig, ax = plt.subplots(figsize=(max(6, 1.0 * len(benches) * max(1, len(models)) * 0.5 + 3), 4))
        width = 0.8 / max(1, len(models))
        for i, m in enumerate(models):
            xs = [j + i * width for j in range(len(benches))]
            ax.bar(xs, [table[b][i] or 0 for b in benches], width, label=m)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(benches))], benches, rotation=20,
                      ha="right", fontsize=8)
        ax.set_ylabel("headline metric (%)")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7)
        save(fig, out_dir / "summary.png")
    return written


def write_report(results: dict, out_dir: str | os.PathLike, charts: bool = True) -> dict:
    """Write results.json, results.md and the charts into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "results.md", markdown(results))
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    if charts:
        paths["charts"] = bar_charts(results, out_dir / "charts")
    return paths
